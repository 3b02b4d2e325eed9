"""The YAML directory file: validation, lookups, reload on change, keeping the last good copy."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bot.directory.factory import create_directory
from bot.directory.file import FileDirectory, load_file_directory
from handlers.config import DirectoryConfig
from handlers.directory import DirectoryError, EmptyDirectory, Person

PEOPLE = """\
- email: Ana@Example.com
  name: Ana Lopez
  slack_id: U0ANA
  teams_id: "29:1ana"
  aad_object_id: 7F1C0000-AAAA
  phone: "+1 555 0100"
  manager: bo@example.com
  vip: true
- email: bo@example.com
  name: Bo Chen
  slack_id: U0BO
  technician: true
- email: cy@example.com
  manager: outside@example.com
"""


class Clock:
    """A hand-moved monotonic clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def write(path: Path, text: str) -> None:
    """Write and push mtime forward so the change is visible even on coarse clocks."""
    path.write_text(text, encoding="utf-8")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


def rewrite_in_the_same_tick(path: Path, text: str) -> None:
    """Overwrite in place (the inode stays) with text of the same size, and leave the mtime
    where it was: as a change within one tick of a coarse file system clock looks."""
    before = path.stat()
    with path.open("r+", encoding="utf-8") as handle:
        handle.write(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size


def rewrite_bytes_in_the_same_tick(path: Path, data: bytes) -> None:
    """Overwrite in place with bytes of the same size, leaving the mtime where it was."""
    before = path.stat()
    with path.open("r+b") as handle:
        handle.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size


def write_in_latin_1(path: Path) -> bytes:
    """A new version of the people file in Latin-1 ("Bo Ch\\xe9n"): no UTF-8. Its bytes."""
    write(path, PEOPLE)
    data = path.read_bytes().replace(b"Bo Chen", b"Bo Ch\xe9n")
    rewrite_bytes_in_the_same_tick(path, data)
    return data


def set_mode(path: Path, mode: int) -> None:
    path.chmod(mode)


@contextmanager
def as_another_user() -> Iterator[None]:
    """Permissions as the bot's own (unprivileged) user sees them: root reads a file of
    mode 0 regardless, so under root the block runs with the effective uid of `nobody`."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


def remove(path: Path) -> None:
    """Delete the file (a helper so async tests stay free of blocking calls)."""
    path.unlink()


@pytest.fixture
def people_file(tmp_path: Path) -> Path:
    path = tmp_path / "people.yaml"
    path.write_text(PEOPLE, encoding="utf-8")
    return path


@pytest.fixture
def open_people_file() -> Iterator[Path]:
    """The people file in a folder anyone may enter (pytest's tmp_path is private to its
    owner: under root, `nobody` could not even stat a file there)."""
    folder = Path(tempfile.mkdtemp(prefix="people-"))
    folder.chmod(0o755)
    path = folder / "people.yaml"
    path.write_text(PEOPLE, encoding="utf-8")
    yield path
    shutil.rmtree(folder, ignore_errors=True)


async def test_loads_people_and_finds_by_email_case_insensitively(people_file: Path) -> None:
    directory = load_file_directory(people_file)
    ana = await directory.find_by_email("ana@EXAMPLE.com ")
    assert ana == Person(
        email="Ana@Example.com",
        name="Ana Lopez",
        slack_id="U0ANA",
        teams_id="29:1ana",
        aad_object_id="7F1C0000-AAAA",
        phone="+1 555 0100",
        manager_email="bo@example.com",
        vip=True,
    )
    assert await directory.find_by_email("nobody@example.com") is None
    assert await directory.has_technicians()


async def test_platform_ids(people_file: Path) -> None:
    directory = FileDirectory(people_file)
    bo = await directory.find_by_platform_id("slack", "U0BO")
    assert bo is not None and bo.email == "bo@example.com"
    assert await directory.find_by_platform_id("slack", "u0bo") is None
    ana = await directory.find_by_platform_id("teams", "29:1ana")
    assert ana is not None and ana.email == "Ana@Example.com"
    by_aad = await directory.find_by_platform_id("teams", "29:other", aad_object_id="7f1c0000-aaaa")
    assert by_aad == ana
    assert await directory.find_by_platform_id("teams", "29:other") is None
    assert await directory.find_by_platform_id("teams", "U0ANA") is None
    assert await directory.find_by_platform_id("email", "U0ANA") is None


async def test_manager_of(people_file: Path) -> None:
    directory = FileDirectory(people_file)
    ana, bo, cy = [
        await directory.find_by_email(e)
        for e in ("ana@example.com", "bo@example.com", "cy@example.com")
    ]
    assert ana and bo and cy
    assert await directory.manager_of(ana) == bo
    assert await directory.manager_of(bo) is None
    # A manager who is not listed comes back with only the e-mail address (no chat ids).
    assert await directory.manager_of(cy) == Person(email="outside@example.com")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{email: a@example.com}", "expected a list of people"),
        (
            "- email: a@example.com\n  slak_id: U1\n",
            r"entry 1 \(a@example.com\): unknown key 'slak_id'",
        ),
        ("- email: a@example.com\n- name: Nobody\n", "entry 2: key 'email' is missing"),
        (
            "- email: a@example.com\n- email: A@example.com\n",
            "entry 2 .*'email' duplicates entry 1",
        ),
        (
            "- {email: a@x.com, slack_id: U1}\n- {email: b@x.com, slack_id: U1}\n",
            "entry 2 .*'slack_id' duplicates",
        ),
        (
            "- {email: a@x.com, teams_id: '29:1'}\n- {email: b@x.com, teams_id: '29:1'}\n",
            "'teams_id' duplicates",
        ),
        (
            "- {email: a@x.com, aad_object_id: AB}\n- {email: b@x.com, aad_object_id: ab}\n",
            "'aad_object_id' duplicates",
        ),
        (
            "- email: a@example.com\n  manager: [b@example.com]\n",
            "entry 1 .*key 'manager' must be a string",
        ),
        ("- email: a@example.com\n  vip: maybe\n", "key 'vip' must be true or false"),
        ("- email: a@example.com\n  phone: 5550100\n", "key 'phone' must be a string"),
        ("- just-a-string\n", "entry 1: expected a mapping"),
        ("- email: not-an-address\n", "key 'email' is not an e-mail address"),
        (
            "- email: a@example.com\n  manager: A@example.com\n",
            "'manager' names the person themself",
        ),
        ("- email: [unclosed\n", "not valid YAML"),
    ],
)
def test_invalid_files_name_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "people.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DirectoryError, match=expected) as caught:
        load_file_directory(path)
    assert str(caught.value).startswith(str(path))


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DirectoryError, match=r"missing\.yaml: cannot read"):
        load_file_directory(tmp_path / "missing.yaml")


async def test_empty_file_lists_nobody(tmp_path: Path) -> None:
    path = tmp_path / "people.yaml"
    path.write_text("# nobody yet\n", encoding="utf-8")
    directory = load_file_directory(path)
    assert directory.people == ()
    assert not await directory.has_technicians()


async def test_reloads_when_file_changes_at_most_once_a_second(people_file: Path) -> None:
    clock = Clock()
    directory = FileDirectory(people_file, clock=clock)
    write(people_file, PEOPLE + "- email: dee@example.com\n")
    clock.now = 0.5
    assert await directory.find_by_email("dee@example.com") is None  # not checked yet
    clock.now = 1.5
    assert await directory.find_by_email("dee@example.com") is not None


async def test_a_change_that_keeps_size_and_mtime_is_still_picked_up(people_file: Path) -> None:
    """Found by a review: a change was seen only through the file's mtime, size and inode.
    Ana's manager rewritten in place from bo@ to cy@ (same size) within the clock tick of
    the last read (a coarse-mtime filesystem: FAT, some NFS; or simply the same tick) kept
    all three: the bot went on asking Bo, who is no longer her manager, for good."""
    clock = Clock()
    directory = FileDirectory(people_file, clock=clock)
    rewrite_in_the_same_tick(
        people_file, PEOPLE.replace("manager: bo@example.com", "manager: cy@example.com")
    )
    clock.now = 1.5
    ana = await directory.find_by_email("ana@example.com")
    assert ana is not None
    manager = await directory.manager_of(ana)
    assert manager is not None and manager.email == "cy@example.com"


async def test_bad_reload_keeps_last_good_copy(
    people_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    directory = FileDirectory(people_file, clock=clock)
    write(people_file, "- email: ana@example.com\n  bogus: 1\n")
    clock.now = 2
    with caplog.at_level(logging.WARNING, logger="handlers.directory"):
        assert await directory.find_by_email("bo@example.com") is not None
        clock.now = 4
        assert await directory.find_by_email("bo@example.com") is not None
    warnings = [r for r in caplog.records if "keeping the last good copy" in r.getMessage()]
    assert len(warnings) == 1 and "bogus" in warnings[0].getMessage()
    # Fixed again: picked up (with a technician: see the next test).
    write(people_file, "- email: eve@example.com\n  technician: true\n")
    clock.now = 6
    assert await directory.find_by_email("eve@example.com") is not None
    assert await directory.find_by_email("bo@example.com") is None
    # Deleted: keeps serving what it had.
    remove(people_file)
    clock.now = 8
    assert await directory.find_by_email("eve@example.com") is not None


async def test_a_version_that_could_not_be_read_is_read_again_once_it_can_be(
    people_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by a review: a version whose read failed was remembered by its mtime, size and
    inode as one not to read again, and none of them moves when the cause is fixed: bytes
    that are no UTF-8 rewritten within the same clock tick, or permissions put right with
    chmod/chown. The bot served the old people (an old manager asked, a technician who left
    still one) until the file happened to change again or the bot restarted."""
    clock = Clock()
    directory = FileDirectory(people_file, clock=clock)
    data = write_in_latin_1(people_file)
    clock.now = 2
    with caplog.at_level(logging.WARNING, logger="bot.directory.file"):
        assert await directory.find_by_email("bo@example.com") is not None
        clock.now = 4
        assert await directory.find_by_email("bo@example.com") is not None
    warnings = [r for r in caplog.records if "cannot read the directory file" in r.getMessage()]
    assert len(warnings) == 1  # told once, not on every check
    # Fixed in place within the same tick (same size, mtime and inode): read.
    rewrite_bytes_in_the_same_tick(people_file, data.replace(b"Bo Ch\xe9n", b"Bo Chan"))
    clock.now = 6
    bo = await directory.find_by_email("bo@example.com")
    assert bo is not None and bo.name == "Bo Chan"


async def test_a_file_the_bot_could_not_read_is_read_once_its_permissions_are_fixed(
    open_people_file: Path,
) -> None:
    """The file is replaced by one the bot's user may not read; the operator sees the warning
    and runs chmod, which leaves the mtime, size and inode as they were."""
    people_file = open_people_file
    clock = Clock()
    directory = FileDirectory(people_file, clock=clock)
    write(people_file, PEOPLE.replace("Bo Chen", "Bo Chan"))
    set_mode(people_file, 0)
    clock.now = 2
    with as_another_user():
        bo = await directory.find_by_email("bo@example.com")
    assert bo is not None and bo.name == "Bo Chen"  # the last good copy meanwhile
    set_mode(people_file, 0o644)
    clock.now = 4
    with as_another_user():
        bo = await directory.find_by_email("bo@example.com")
    assert bo is not None and bo.name == "Bo Chan"


async def test_no_technician_listed(tmp_path: Path) -> None:
    path = tmp_path / "people.yaml"
    path.write_text("- email: a@example.com\n", encoding="utf-8")
    assert not await load_file_directory(path).has_technicians()


async def test_empty_directory() -> None:
    directory = EmptyDirectory()
    assert await directory.find_by_email("a@example.com") is None
    assert await directory.find_by_platform_id("slack", "U1") is None
    assert await directory.manager_of(Person(email="a@example.com")) is None
    assert not await directory.has_technicians()
    await directory.close()


async def test_factory_resolves_path_relative_to_config_dir(people_file: Path) -> None:
    config = DirectoryConfig(source="file", path="people.yaml")
    directory = await create_directory(config, config_dir=people_file.parent, env={})
    assert isinstance(directory, FileDirectory) and directory.path == people_file
    assert isinstance(
        await create_directory(DirectoryConfig(), config_dir=None, env={}), EmptyDirectory
    )
    with pytest.raises(DirectoryError, match=r"nope\.yaml"):
        await create_directory(
            DirectoryConfig(path="nope.yaml"), config_dir=people_file.parent, env={}
        )


async def test_factory_names_missing_settings() -> None:
    with pytest.raises(DirectoryError, match=r"directory\.ldap is required"):
        await create_directory(DirectoryConfig(source="ldap"), config_dir=None, env={})
    ldap = DirectoryConfig.model_validate({"source": "ldap", "ldap": {"url": "ldap://dc1"}})
    with pytest.raises(DirectoryError, match=r"directory\.ldap\.base_dn"):
        await create_directory(ldap, config_dir=None, env={})
    bad_url = DirectoryConfig.model_validate(
        {"source": "ldap", "ldap": {"url": "http://dc1", "base_dn": "dc=x"}}
    )
    with pytest.raises(DirectoryError, match=r"directory\.ldap\.url"):
        await create_directory(bad_url, config_dir=None, env={})
    bound = DirectoryConfig.model_validate(
        {"source": "ldap", "ldap": {"url": "ldap://dc1", "base_dn": "dc=x", "bind_dn": "cn=bot"}}
    )
    with pytest.raises(DirectoryError, match="LDAP_BIND_PASSWORD"):
        await create_directory(bound, config_dir=None, env={})
    graph = DirectoryConfig(source="graph")
    with pytest.raises(DirectoryError, match=r"directory\.graph\.tenant_id"):
        await create_directory(graph, config_dir=None, env={})
    insecure = DirectoryConfig.model_validate(
        {"source": "graph", "graph": {"authority_host": "http://login.example"}}
    )
    with pytest.raises(DirectoryError, match=r"directory\.graph\.authority_host"):
        await create_directory(insecure, config_dir=None, env={})


def test_config_refuses_unknown_directory_keys() -> None:
    with pytest.raises(ValueError, match="tenant"):
        DirectoryConfig.model_validate({"source": "graph", "graph": {"tenant": "x"}})


def test_the_start_up_line_counts_one_person_as_a_person(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The log said `1 people`."""
    path = tmp_path / "directory.yaml"
    path.write_text("- {name: Ana Lopez, email: ana@example.com, slack_id: UANA}\n")
    caplog.set_level(logging.INFO, logger="bot.directory.file")
    load_file_directory(path)
    assert f"directory: 1 person from {path}" in caplog.messages, caplog.messages
    path.write_text(
        "- {name: Ana Lopez, email: ana@example.com, slack_id: UANA}\n"
        "- {name: Bo Boss, email: bo@example.com, slack_id: UBO}\n"
    )
    load_file_directory(path)
    assert f"directory: 2 people from {path}" in caplog.messages, caplog.messages
