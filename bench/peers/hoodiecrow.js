// hoodiecrow-imap: one user (LOGIN alice@example.test / alice-password), empty INBOX,
// plaintext. Prints the port it listens on (127.0.0.1, kernel-chosen), serves until killed.
"use strict";
const hoodiecrow = require("hoodiecrow-imap");

const server = hoodiecrow({
  plugins: ["ID", "IDLE", "LITERALPLUS", "ENABLE", "UNSELECT"],
  users: { "alice@example.test": { password: "alice-password" } },
  storage: { INBOX: { messages: [] } },
  debug: false,
});
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: server.server.address().port }) + "\n");
});
