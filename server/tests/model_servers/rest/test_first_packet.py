"""The REST server's first-packet reading (http_server._FirstPacketParser) in-process, with aiohttp's real parser:
how much parsing a packet with requests pipelined behind a `Connection: close` one costs."""

import asyncio

import pytest
from aiohttp import http_parser, web_protocol

from server.model_servers.rest import http_server


class Protocol:
    """What a parser asks of its connection: flow control only."""

    _reading_paused = False

    def pause_reading(self):
        pass

    def resume_reading(self, **_):
        pass


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_the_packet_is_read_again_once_not_once_per_halving(loop):
    # Before, the longest start of the packet that a parser accepts was found by halving: ~17 parses of the whole
    # packet, and a 240 KB packet of 1-byte chunks held the event loop ~290 ms (every REST client waited).
    fed = []

    def new_parser(queue=0):
        parser = http_parser.HttpRequestParser(Protocol(), loop, 2**16, auto_decompress=False,
                                               payload_exception=web_protocol.RequestPayloadError,
                                               max_msg_queue_size=queue)
        feed = parser.feed_data
        return type("Counting", (), {"feed_data": lambda self, data: fed.append(len(data)) or feed(data),
                                     "message_consumed": lambda self: parser.message_consumed()})()

    chunks = b"1\r\nx\r\n" * 20000 + b"0\r\n\r\n"
    packet = (b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n" * 3
              + b"POST /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks
              + b"GET /dropped HTTP/1.1\r\nHost: x\r\n\r\n")
    reader = http_server._FirstPacketParser(new_parser(32), lambda: new_parser(1))
    messages, _, _ = reader.feed_data(packet)
    assert [message.path for message, _ in messages] == ["/a", "/a", "/a", "/b"]
    assert messages[-1][1].is_eof() and messages[-1][1].total_bytes == 20000  # the close request's body, whole
    # the first parser's refused pass, then the new parser's: the packet once, then only its (empty) pauses
    assert fed[:2] == [len(packet), len(packet)] and set(fed[2:]) == {0}, fed[:6]
    assert reader.feed_data(b"GET /later HTTP/1.1\r\nHost: x\r\n\r\n") == ((), False, b"")  # dropped
