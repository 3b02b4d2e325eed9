"""A TCP proxy on 127.0.0.1 that stands between the app and a real server and can fail like a
network: `refuse` (new connections refused, open ones reset, as when the server is down),
`reset` (open connections reset once, new ones go through), `hold` (nothing moves in either
direction and nothing is closed: a partition, as after a fail-over; new connections hang),
and back to `open` (held connections carry on where they stopped) or `fail_over` (healed onto
another server: the held connections are gone, reset or left silent for good, and only new
connections work). `lose_commit_answer` loses one COMMIT's answer: the COMMIT reaches the
server (which commits) and the connection is reset before its answer gets back, so the client
cannot know. The real server is never stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass, field


@dataclass(eq=False)
class _Pipe:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # `lose_commit_answer`: this connection carried the marker; its COMMIT went to the server.
    marked: bool = False
    commit_sent: bool = False


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.mode = "open"
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[_Pipe] = set()
        # Client ends of connections dropped silently by `fail_over`: open, never answered.
        self._silent: set[_Pipe] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._trap: bytes | None = None
        self.commit_answers_lost = 0

    async def start(self) -> TcpProxy:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        await self._listen()
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )

    async def stop(self) -> None:
        self._flowing.set()
        await self._close_listener()
        for pipe in list(self._pipes):
            self._abort(pipe)
        for pipe in list(self._silent):
            pipe.client.transport.abort()
        self._silent.clear()

    async def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)
            self._server = None

    # -- modes ----------------------------------------------------------------------------------

    async def refuse(self) -> None:
        """The server is gone: connections refused, open ones reset."""
        self.mode = "refuse"
        self._flowing.set()
        await self._close_listener()
        for pipe in list(self._pipes):
            self._abort(pipe)

    def reset(self) -> None:
        """Reset every open connection once (new ones work)."""
        for pipe in list(self._pipes):
            self._abort(pipe)

    def hold(self) -> None:
        """A partition: bytes stop moving, nothing is closed, new connections hang."""
        self.mode = "hold"
        self._flowing.clear()

    async def open(self) -> None:
        """Healed: everything flows again (held connections resume where they were)."""
        self.mode = "open"
        if self._server is None:
            await self._listen()
        self._flowing.set()

    def lose_commit_answer(self, marker: bytes) -> None:
        """On the connection whose client next sends `marker` (e.g. a value it writes), the
        COMMIT that follows reaches the server, and the server's answer to it is lost: the
        connection is reset when that answer arrives, before the client sees it. Once."""
        self._trap = marker

    async def fail_over(self, *, silent: bool = False) -> None:
        """Healed onto another server: every connection held until now is dropped and new
        ones go through. Dropped means reset (the address now belongs to a server that does
        not know them) or, `silent`, left open on the client's side with nothing ever coming
        back (their server is gone and no RST arrives): only the client's own timeouts end
        those. What was held in them never reaches anyone."""
        for pipe in list(self._pipes):
            if silent:
                self._silence(pipe)
            else:
                self._abort(pipe)
        await self.open()

    # -- plumbing -------------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        pipe = _Pipe(writer)
        self._pipes.add(pipe)
        try:
            await self._flowing.wait()  # a partition: the connect just hangs
            if pipe not in self._pipes:
                return  # dropped meanwhile (fail-over or reset)
            if self.mode == "refuse":
                self._abort(pipe)
                return
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            pipe.server = up_writer
            pipe.tasks = [
                asyncio.ensure_future(self._pump(reader, up_writer, pipe, upstream=True)),
                asyncio.ensure_future(self._pump(up_reader, writer, pipe, upstream=False)),
            ]
            await asyncio.gather(*pipe.tasks, return_exceptions=True)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._abort(pipe)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pipe: _Pipe,
        *,
        upstream: bool,
    ) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                # Held bytes wait here; a connection reset meanwhile drops them, like a
                # network that never delivered them.
                await self._flowing.wait()
                if pipe not in self._pipes:
                    return
                if upstream and self._trap is not None:
                    pipe.marked = pipe.marked or self._trap in data
                    if pipe.marked and b"COMMIT" in data:
                        pipe.commit_sent, self._trap = True, None
                elif not upstream and pipe.commit_sent:
                    # The server's answer to the COMMIT (it committed): lost with the line.
                    self.commit_answers_lost += 1
                    self._abort(pipe)
                    return
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._abort(pipe)

    def _silence(self, pipe: _Pipe) -> None:
        """Drop `pipe` without telling its client: the server end is closed, the client end
        stays open and nothing is read from it or written to it again."""
        self._pipes.discard(pipe)
        self._silent.add(pipe)
        current = asyncio.current_task()
        for task in pipe.tasks:
            if task is not current:
                task.cancel()
        if pipe.server is not None:
            pipe.server.transport.abort()

    def _abort(self, pipe: _Pipe) -> None:
        if pipe not in self._pipes:
            return
        self._pipes.discard(pipe)
        for writer in (pipe.client, pipe.server):
            if writer is not None:
                transport = writer.transport
                if isinstance(transport, asyncio.Transport):
                    transport.abort()  # RST, not a polite close
        current = asyncio.current_task()
        for task in pipe.tasks:
            if task is not current:
                task.cancel()
