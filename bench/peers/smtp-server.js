// nodemailer's smtp-server as a sink: plaintext, no AUTH, the message read and dropped.
// Prints the port it listens on (127.0.0.1, kernel-chosen), then serves until killed.
"use strict";
const { SMTPServer } = require("smtp-server");

const server = new SMTPServer({
  authOptional: true,
  disabledCommands: ["STARTTLS", "AUTH"],
  logger: false,
  size: 35 * 1024 * 1024,
  onData(stream, session, callback) {
    stream.on("data", () => {});
    stream.on("end", () => callback(null, "Ok"));
  },
});
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: server.server.address().port }) + "\n");
});
