//! The API's per-client token bucket (Kazoo's 429 `too_many_requests`), end to end.

mod common;

use common::Switchboard;

#[test]
fn an_empty_bucket_answers_429_with_retry_after() {
    // A small bucket so the test is quick: 5 tokens, 1 a second, a login costs 3.
    let mut board = Switchboard::prepare(&[
        ("SWITCHBOARD_API_RATE_LIMIT", "true"),
        ("SWITCHBOARD_API_RATE_LIMIT_BURST", "5"),
        ("SWITCHBOARD_API_RATE_LIMIT_PER_SECOND", "1"),
        ("SWITCHBOARD_API_LOGIN_COST", "3"),
    ]);
    board.start();
    let (token, admin) = board.login(&board.bootstrap_key());
    let path = format!("/v2/accounts/{admin}");
    // 2 tokens left: two requests pass (unless a second has passed, which only helps).
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(board.api(&token, "GET", &path, None));
    }
    let limited = statuses
        .iter()
        .find(|response| response.status == 429)
        .expect("the bucket runs dry within four requests");
    assert_eq!(limited.json["status"], "error", "{}", limited.text);
    assert_eq!(limited.json["error"], "429");
    assert_eq!(limited.json["message"], "too_many_requests");
    let retry_after: u64 = limited
        .header("retry-after")
        .and_then(|value| value.parse().ok())
        .expect("Retry-After");
    assert!((1..=5).contains(&retry_after), "{retry_after}");
    assert_eq!(statuses[0].status, 200, "{}", statuses[0].text);

    // A login costs more than what is left.
    let key = board.bootstrap_key();
    let login = board.api(
        "",
        "PUT",
        "/v2/api_auth",
        Some(&format!("{{\"data\":{{\"api_key\":\"{key}\"}}}}")),
    );
    assert_eq!(login.status, 429, "{}", login.text);

    // The bucket refills: after the wait, requests pass again.
    std::thread::sleep(std::time::Duration::from_secs(retry_after.max(3)));
    assert_eq!(board.api(&token, "GET", &path, None).status, 200);
}
