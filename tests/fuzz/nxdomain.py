"""A DNS server on a loopback UDP port that answers NXDOMAIN to everything.

The fuzzer's tenantry verifies custom domains against it (DNS_RESOLVER), so
verification gets a real, fast "no such record" answer offline, instead of a
timeout (which the service rightly reports as 503). Prints its port, then
serves until killed.
"""
import socket
import sys

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
while True:
    query, peer = sock.recvfrom(4096)
    if len(query) < 12:
        continue
    # The question: the name's labels up to the zero byte, then type and class.
    end = 12
    while end < len(query) and query[end] != 0:
        end += query[end] + 1
    question = query[12 : end + 5]
    flags = bytes([0x80 | (query[2] & 0x01), 0x83])  # response, RD copied, RA, NXDOMAIN
    header = query[:2] + flags + b"\x00\x01" + b"\x00\x00" * 3
    sock.sendto(header + question, peer)
