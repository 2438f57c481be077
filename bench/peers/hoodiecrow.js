// hoodiecrow-imap: one user (LOGIN alice@example.test / alice-password), plaintext; INBOX
// empty, or the messages of the JSON list of raw strings named by $HOODIECROW_MESSAGES.
// Prints the port it listens on (127.0.0.1, kernel-chosen), then serves until killed.
"use strict";
const fs = require("fs");
const hoodiecrow = require("hoodiecrow-imap");

const file = process.env.HOODIECROW_MESSAGES;
const messages = file ? JSON.parse(fs.readFileSync(file, "utf8")).map((raw) => ({ raw })) : [];

const server = hoodiecrow({
  plugins: ["ID", "IDLE", "LITERALPLUS", "ENABLE", "UNSELECT"],
  users: { "alice@example.test": { password: "alice-password" } },
  storage: { INBOX: { messages } },
  debug: false,
});
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: server.server.address().port }) + "\n");
});
