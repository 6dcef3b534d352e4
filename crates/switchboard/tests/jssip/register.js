// A headless JsSIP user agent (the browser SIP stack, over Node's WebSocket) for tests/jssip.rs:
// registers USER@REALM with PASSWORD over URL (ws:// or wss://, any certificate accepted),
// prints "registered" (or "failed: CAUSE"), answers what the server sends (JsSIP answers
// OPTIONS itself), and on "close" from standard input drops the socket without unregistering.
// usage: node register.js URL USER REALM PASSWORD
const JsSIP = require('jssip');
const NodeWebSocket = require('jssip-node-websocket');

const [url, user, realm, password] = process.argv.slice(2);
const socket = new NodeWebSocket(url, {
  clientConfig: { tlsOptions: { rejectUnauthorized: false } },
});
const ua = new JsSIP.UA({
  sockets: [socket],
  uri: `sip:${user}@${realm}`,
  password,
  register: true,
  register_expires: 600,
  user_agent: 'JsSIP (switchboard test)',
});
ua.on('registered', () => console.log('registered'));
ua.on('registrationFailed', (event) => {
  console.log(`failed: ${event.cause}`);
  process.exit(1);
});
ua.on('newMessage', () => {});
ua.start();
process.stdin.on('data', (data) => {
  if (data.toString().includes('close')) {
    process.exit(0);
  }
});
setTimeout(() => process.exit(2), 30000);
