#!/usr/bin/env python3
"""A registry that drip-feeds: every request gets its status line, then one
byte of headers every DRIP seconds, forever. What a broken proxy or an
overloaded registry looks like to a client: never silent long enough for a
read timeout, never done. Usage: drip-registry.py PORT [DRIP]"""
import socket
import sys
import threading
import time

PORT = int(sys.argv[1])
DRIP = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0


def serve(conn):
    try:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        while True:
            time.sleep(DRIP)
            conn.sendall(b"X")
    except OSError:
        pass
    finally:
        conn.close()


s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", PORT))
s.listen(128)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
