"""The directory file source (SPEC "Directory file"): people from YAML, reloaded on change."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.yaml_errors import describe_yaml_error, load_yaml
from handlers.directory import DirectoryError, Person, address_key
from handlers.formatting import counted

log = logging.getLogger(__name__)

_STRING_KEYS = ("email", "name", "slack_id", "teams_id", "aad_object_id", "phone", "manager")
_BOOL_KEYS = ("vip", "technician", "disabled")
_KNOWN_KEYS = frozenset(_STRING_KEYS + _BOOL_KEYS)
_ID_KEYS = ("slack_id", "teams_id", "aad_object_id")


class _Index:
    """People of one valid file, indexed for lookups."""

    def __init__(self, people: Iterable[Person]) -> None:
        self.people = tuple(people)
        self.by_email = {p.email.lower(): p for p in self.people}
        self.by_slack = {p.slack_id: p for p in self.people if p.slack_id}
        self.by_teams = {p.teams_id: p for p in self.people if p.teams_id}
        self.by_aad = {p.aad_object_id.lower(): p for p in self.people if p.aad_object_id}
        self.has_technicians = any(p.technician for p in self.people)


def _person(path: Path, number: int, entry: Any) -> Person:
    where = f"{path}: entry {number}"
    if not isinstance(entry, dict):
        raise DirectoryError(f"{where}: expected a mapping of keys, got {type(entry).__name__}")
    if isinstance(entry.get("email"), str):
        where += f" ({entry['email']})"
    unknown = sorted(str(k) for k in entry if k not in _KNOWN_KEYS)
    if unknown:
        known = ", ".join(sorted(_KNOWN_KEYS))
        raise DirectoryError(f"{where}: unknown key {unknown[0]!r} (known keys: {known})")
    for key in _STRING_KEYS:
        value = entry.get(key)
        if value is not None and not isinstance(value, str):
            raise DirectoryError(f"{where}: key {key!r} must be a string (quote it), got {value!r}")
    for key in _BOOL_KEYS:
        value = entry.get(key)
        if value is not None and not isinstance(value, bool):
            raise DirectoryError(f"{where}: key {key!r} must be true or false, got {value!r}")
    email = (entry.get("email") or "").strip()
    if not email:
        raise DirectoryError(f"{where}: key 'email' is missing")
    if "@" not in email:
        raise DirectoryError(f"{where}: key 'email' is not an e-mail address: {email!r}")
    manager = (entry.get("manager") or "").strip() or None
    if manager is not None and manager.lower() == email.lower():
        raise DirectoryError(f"{where}: key 'manager' names the person themself")

    def text(key: str) -> str | None:
        return (entry.get(key) or "").strip() or None

    return Person(
        email=email,
        name=text("name") or "",
        slack_id=text("slack_id"),
        teams_id=text("teams_id"),
        aad_object_id=text("aad_object_id"),
        phone=text("phone"),
        manager_email=manager,
        vip=bool(entry.get("vip", False)),
        technician=bool(entry.get("technician", False)),
        disabled=bool(entry.get("disabled", False)),
    )


def parse_directory(path: Path, text: str) -> tuple[Person, ...]:
    """Validate the text of a directory file; raises DirectoryError naming the file and entry."""
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise DirectoryError(f"{path}: not valid YAML: {describe_yaml_error(exc)}") from None
    if data is None:
        return ()
    if not isinstance(data, list):
        raise DirectoryError(f"{path}: expected a list of people, got {type(data).__name__}")
    people: list[Person] = []
    seen: dict[tuple[str, str], int] = {}
    for number, entry in enumerate(data, start=1):
        person = _person(path, number, entry)
        keys = [("email", person.email.lower())]
        for key in _ID_KEYS:
            if value := getattr(person, key):
                keys.append((key, value.lower() if key == "aad_object_id" else value))
        for key, value in keys:
            if (key, value) in seen:
                raise DirectoryError(
                    f"{path}: entry {number} ({person.email}): key {key!r} duplicates "
                    f"entry {seen[key, value]} ({value})"
                )
            seen[key, value] = number
        people.append(person)
    emails = {p.email.lower() for p in people}
    for person in people:
        if person.manager_email and person.manager_email.lower() not in emails:
            log.warning(
                "%s: manager %s of %s is not listed; no chat id to ask them on",
                path,
                person.manager_email,
                person.email,
            )
    return tuple(people)


def _signature(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_mtime_ns, st.st_size, st.st_ino)


# A file changed within this long before it was read may change again, in place and to the
# same size, without its mtime moving (coarse file system clocks: FAT's ticks are 2 s): its
# content is compared on each check until a read comes later than that ("racily clean").
_RACY_NS = 2_000_000_000


@dataclass(frozen=True)
class _Seen:
    """A version of the file as last read: stat signature, content digest, and whether a
    change could still hide behind the same signature."""

    signature: tuple[int, int, int]
    digest: str
    racy: bool


def _read(path: Path) -> tuple[_Seen, str]:
    """The file's version and text now; DirectoryError when it cannot be read."""
    started = time.time_ns()
    try:
        signature = _signature(os.stat(path))
        data = path.read_bytes()
        text = data.decode("utf-8")
    except OSError as exc:
        raise DirectoryError(f"{path}: cannot read the directory file: {exc}") from None
    except UnicodeDecodeError as exc:
        # As the config file says it: where, and what to do (not the codec's own words).
        raise DirectoryError(
            f"{path}: cannot read the directory file: it is not UTF-8 text (byte {exc.start}); "
            "save it as UTF-8"
        ) from None
    seen = _Seen(signature, hashlib.sha256(data).hexdigest(), signature[0] >= started - _RACY_NS)
    return seen, text


class FileDirectory:
    """People from the SPEC YAML file; reloads when the file changes, keeps the last good copy."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        check_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self._check_interval = check_interval
        self._clock = clock
        seen, text = _read(self.path)
        self._index, self._seen = _Index(parse_directory(self.path, text)), seen
        self._checked_at = clock()
        self._bad: _Seen | None = None  # the last version that could not be used
        self._unreadable = False
        # The version whose read failed, as last told (the read is tried again each check).
        self._unread: tuple[int, int, int] | None = None

    def _refresh(self) -> _Index:
        now = self._clock()
        if now - self._checked_at < self._check_interval:
            return self._index
        self._checked_at = now
        try:
            signature = _signature(os.stat(self.path))
        except OSError as exc:
            if not self._unreadable:
                log.warning("%s: cannot read (%s); keeping the last good copy", self.path, exc)
                self._unreadable = True
            return self._index
        self._unreadable = False
        for known in (self._seen, self._bad):
            if known is not None and known.signature == signature and not known.racy:
                return self._index
        try:
            seen, text = _read(self.path)
        except DirectoryError as exc:
            # Not remembered as a bad version: what stopped the read (the file's permissions
            # or owner, a parent directory's, bytes rewritten within one clock tick) can be
            # fixed without the mtime, size or inode changing. Tried again on each check,
            # told once until the file changes.
            if self._unread != signature:
                log.warning("%s; keeping the last good copy", exc)
                self._unread = signature
            return self._index
        self._unread = None
        if seen.digest == self._seen.digest:  # the same content (touched, or racily clean)
            self._seen, self._bad = seen, None
            return self._index
        if self._bad is not None and seen.digest == self._bad.digest:
            self._bad = seen
            return self._index
        try:
            index = _Index(parse_directory(self.path, text))
        except DirectoryError as exc:
            log.warning("%s; keeping the last good copy", exc)
            self._bad = seen
            return self._index
        if self._index.has_technicians and not index.has_technicians:
            # With no technician listed everyone counts as one (SPEC): a file emptied while
            # it is rewritten, or every `technician: true` lost in an edit, must not hand
            # every technician action to everyone while the bot runs. Fail closed.
            log.warning(
                "%s: lists no technician now, so everyone would count as one; keeping the "
                "last good copy (restart the bot to run without technicians)",
                self.path,
            )
            self._bad = seen
            return self._index
        self._index, self._seen, self._bad = index, seen, None
        log.info("%s: reloaded, %s", self.path, counted(len(index.people), "person", "people"))
        return self._index

    @property
    def people(self) -> tuple[Person, ...]:
        """Everyone currently listed (after a cheap change check)."""
        return self._refresh().people

    async def find_by_platform_id(
        self, platform: str, user_id: str, *, aad_object_id: str | None = None
    ) -> Person | None:
        """Slack: by slack_id. Teams: by teams_id, else by aad_object_id when given."""
        index = self._refresh()
        if platform == "slack":
            return index.by_slack.get(user_id)
        if platform == "teams":
            found = index.by_teams.get(user_id)
            if found is None and aad_object_id:
                found = index.by_aad.get(aad_object_id.lower())
            return found
        return None

    async def find_by_email(self, email: str) -> Person | None:
        """The person with this e-mail address (case-insensitive)."""
        key = address_key(email)
        return self._refresh().by_email.get(key) if key else None

    async def manager_of(self, person: Person) -> Person | None:
        """The listed manager; a bare Person (email only) when the manager is not listed."""
        if not person.manager_email:
            return None
        found = self._refresh().by_email.get(person.manager_email.lower())
        return found or Person(email=person.manager_email)

    async def has_technicians(self) -> bool:
        """True when at least one person is marked technician."""
        return self._refresh().has_technicians

    async def close(self) -> None:
        """Nothing to release."""


def load_file_directory(path: str | os.PathLike[str]) -> FileDirectory:
    """Load and validate the directory file at start-up; raises DirectoryError."""
    directory = FileDirectory(path)
    log.info(
        "directory: %s from %s", counted(len(directory.people), "person", "people"), directory.path
    )
    return directory
