"""A webhook receiver for jitgate's notification test: a real HTTP server on
loopback that verifies each delivery with the Standard Webhooks reference
library (standardwebhooks), answers 503 to the first attempts of each
message (to make jitgate retry), and logs every attempt as a JSON line.

usage: webhook_receiver.py LOG_FILE FAIL_FIRST   (secret in WEBHOOK_SECRET)
Prints the port it listens on, then serves until killed.
"""
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

LOG, FAIL_FIRST = sys.argv[1], int(sys.argv[2])
VERIFIER = Webhook(os.environ["WEBHOOK_SECRET"])
ATTEMPTS = {}


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            VERIFIER.verify(body, headers)
            verified = True
        except WebhookVerificationError as e:
            verified = False
        msg = headers.get("webhook-id", "")
        ATTEMPTS[(self.path, msg)] = ATTEMPTS.get((self.path, msg), 0) + 1
        attempt = ATTEMPTS[(self.path, msg)]
        status = 401 if not verified else (503 if attempt <= FAIL_FIRST else 204)
        with open(LOG, "a") as log:
            log.write(json.dumps({"path": self.path, "id": msg, "attempt": attempt, "verified": verified, "status": status,
                                  "timestamp": headers.get("webhook-timestamp"), "body": body.decode("utf-8", "replace")}) + "\n")
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
print(server.server_address[1], flush=True)
server.serve_forever()
