"""The one thing the fleet tests mock: the system resolver, for names listed in $TFS_TEST_FAKE_DNS.

A script started with this folder on PYTHONPATH imports this module at start-up (Python's site hook), and
socket.getaddrinfo answers the names listed as a headless Service's DNS would: every address, in a shuffled
order. $TFS_TEST_FAKE_DNS is `name=ip,ip;name=ip`; a name listed with no address fails as unknown;
$TFS_TEST_FAKE_DNS_DELAY (seconds) makes every answer that slow, as a resolver that does not answer.
Every other name goes to the real resolver.
"""

import os
import random
import socket
import time

_real_getaddrinfo = socket.getaddrinfo
_TABLE = {}
for _entry in filter(None, os.environ.get("TFS_TEST_FAKE_DNS", "").split(";")):
    _name, _, _ips = _entry.partition("=")
    _TABLE[_name.strip().lower()] = [ip.strip() for ip in _ips.split(",") if ip.strip()]


def _fake_getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
    name = host.decode() if isinstance(host, bytes) else host
    if name is None or name.lower() not in _TABLE:
        return _real_getaddrinfo(host, port, family, type, proto, flags)
    time.sleep(float(os.environ.get("TFS_TEST_FAKE_DNS_DELAY", "0")))
    ips = _TABLE[name.lower()]
    if not ips:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    answers = []
    for ip in random.sample(ips, len(ips)):
        if ":" in ip:
            if family in (0, socket.AF_INET6):
                answers.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (ip, int(port), 0, 0)))
        elif family in (0, socket.AF_INET):
            answers.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, int(port))))
    return answers


socket.getaddrinfo = _fake_getaddrinfo
