"""An SMTP server for the email tests (aiosmtpd, from the test venv): every message it
accepts is appended to a JSON-lines file as {"from", "to", "data"}.

    python scripts/smtp_sink.py PORT FILE [--fail-first N]

A recipient whose address starts with "bounce" is refused permanently (550); with
--fail-first, the first N messages are refused as a transient failure (451) first.
"""
import argparse
import json
import time

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, path, fail_first):
        self.path = path
        self.fail_left = fail_first

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("bounce"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.fail_left > 0:
            self.fail_left -= 1
            return "451 4.3.0 try again later"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({
                "from": envelope.mail_from,
                "to": envelope.rcpt_tos,
                "data": envelope.content.decode("utf-8", "replace"),
            }) + "\n")
        return "250 Message accepted"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("file")
    parser.add_argument("--fail-first", type=int, default=0)
    args = parser.parse_args()
    controller = Controller(Sink(args.file, args.fail_first), hostname="127.0.0.1", port=args.port)
    controller.start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
