"""Error signatures from real product error texts: what they are, and which texts match."""

from __future__ import annotations

import unicodedata

import pytest

from handlers.diagnosis import look_alike, same_error, signatures
from handlers.diagnosis.rules import codes, describe, exceptions, first_line, normalised, terms

# (product, exact error text as users paste it, its error codes)
TABLE: list[tuple[str, str, set[str]]] = [
    (
        "Windows Update",
        "There were some problems installing updates, but we'll try again later. If you keep "
        "seeing this and want to search the web or contact support for information, this may "
        "help: (0x80070005)",
        {"hex:0x80070005"},
    ),
    (
        "Windows Update",
        "2026-12 Cumulative Update for Windows 11 Version 23H2 for x64-based Systems "
        "(KB5033375) - Error 0x800f0922",
        {"hex:0x800f0922"},
    ),
    ("Windows Update", "Download error - 0x80240034", {"hex:0x80240034"}),
    (
        "Outlook",
        "Task 'ana@contoso.com - Sending' reported error (0x800CCC0E) : 'Outlook cannot connect "
        "to your outgoing (SMTP) e-mail server. If you continue to receive this message, contact "
        "your server administrator or Internet service provider (ISP).'",
        {"hex:0x800ccc0e"},
    ),
    (
        "Outlook",
        "Task 'bo@contoso.com - Receiving' reported error (0x8004010F) : 'Outlook data file "
        "cannot be accessed.'",
        {"hex:0x8004010f"},
    ),
    (
        "Outlook",
        "Cannot start Microsoft Outlook. Cannot open the Outlook window. The set of folders "
        "cannot be opened. The file C:\\Users\\ana\\AppData\\Local\\Microsoft\\Outlook\\"
        "ana@contoso.com.ost is not an Outlook data file (.ost).",
        set(),
    ),
    (
        "Office activation",
        "Something went wrong. Sorry, we ran into a problem. Error Code: 30015-11 (-2147023728)",
        {"office:30015-11", "hex:0x80070490"},
    ),
    ("Teams", "We're sorry-we've run into an issue. Error code - caa70004", {"hex:0xcaa70004"}),
    (
        "Teams",
        "Error code: 80090016. Your computer's Trusted Platform Module has malfunctioned.",
        {"hex:0x80090016"},
    ),
    (
        "Entra ID sign-in",
        "AADSTS50126: Error validating credentials due to invalid username or password. "
        "Trace ID: 0e9f3b6a-2c1d-4b8e-9f00-1a2b3c4d5e6f Correlation ID: "
        "5b1c7d2e-1111-4b8e-9f00-aaaaaaaaaaaa Timestamp: 2026-12-10 09:12:03Z",
        {"aadsts:50126"},
    ),
    (
        "Entra ID sign-in",
        "AADSTS50076: Due to a configuration change made by your administrator, or because you "
        "moved to a new location, you must use multi-factor authentication to access "
        "'00000003-0000-0000-c000-000000000000'.",
        {"aadsts:50076"},
    ),
    (
        "Entra ID sign-in",
        "AADSTS700016: Application with identifier 'a1b2c3' was not found in the directory "
        "'contoso.onmicrosoft.com'.",
        {"aadsts:700016"},
    ),
    (
        "Windows VPN",
        "Error 809: The network connection between your computer and the VPN server could not "
        "be established because the remote server is not responding.",
        {"error:809"},
    ),
    (
        "Windows VPN",
        "The remote connection was not made because the attempted VPN tunnels failed. The VPN "
        "server might be unreachable. Error 800",
        {"error:800"},
    ),
    (
        "Cisco AnyConnect",
        "AnyConnect was not able to establish a connection to the specified secure gateway. "
        "Please try connecting again.",
        set(),
    ),
    (
        "Printer",
        "Operation could not be completed (error 0x00000709). Double check the printer name and "
        "make sure that the printer is connected to the network.",
        {"hex:0x00000709"},
    ),
    (
        "Printer",
        "Windows cannot connect to the printer. Operation failed with error 0x0000011B.",
        {"hex:0x0000011b"},
    ),
    ("HTTP", "HTTP Error 503. The service is unavailable.", {"http:503"}),
    ("HTTP", "The remote server returned an error: (401) Unauthorized.", {"http:401"}),
    ("HTTP", "502 Bad Gateway nginx/1.24.0", {"http:502"}),
    ("HTTP", "HTTP/1.1 429 Too Many Requests", {"http:429"}),
    (
        "Windows event log",
        "Event ID 41: The system has rebooted without cleanly shutting down first.",
        {"event:41"},
    ),
    (
        "Windows event log",
        "Faulting application name: OUTLOOK.EXE, version: 16.0.17029.20108, time stamp: "
        "0x6554e3a1 Exception code: 0xc0000005 Fault offset: 0x00000000001a0b5 Event ID 1000",
        {"hex:0xc0000005", "event:1000"},
    ),
    ("Installer", "Error 1603: A fatal error occurred during installation.", {"error:1603"}),
    ("File share", "System error 53 has occurred. The network path was not found.", {"error:53"}),
]


@pytest.mark.parametrize(("product", "text", "expected"), TABLE, ids=[f"{p}" for p, *_ in TABLE])
def test_error_codes_of_real_texts(product: str, text: str, expected: set[str]) -> None:
    assert {s.key for s in codes(text)} == expected
    found = {s.kind for s in signatures(text)}
    assert "exact" in found and "text" in found  # every text also has these two


def test_table_has_twenty_products_texts() -> None:
    assert len(TABLE) >= 20
    assert {p for p, *_ in TABLE} >= {"Windows Update", "Outlook", "Teams", "HTTP", "Printer"}


# Two reports of one error: other time stamps, ids, paths, user names.
SAME = [
    (
        "AADSTS50126: Error validating credentials due to invalid username or password. "
        "Trace ID: 0e9f3b6a-2c1d-4b8e-9f00-1a2b3c4d5e6f Timestamp: 2026-12-10 09:12:03Z",
        "AADSTS50126: Error validating credentials due to invalid username or password. "
        "Trace ID: 7d0e3b6a-9c1d-4b8e-9f00-ffffffffffff Timestamp: 2026-12-11 17:40:55Z",
    ),
    (
        "2026-11-10 08:12:44 Windows failed to install the update with error 0x80070005. "
        "Log: C:\\Windows\\Logs\\CBS\\CBS.log",
        "12/09/2026 4:03 PM Windows failed to install the update with error 0x80070005. "
        "Log: D:\\Logs\\CBS-2.log",
    ),
    (
        "Operation failed with error 0x0000011B connecting to \\\\PRINTSRV01\\HP-3F",
        "Operation failed with error 0x11b connecting to \\\\PRINTSRV02\\Canon-2",
    ),
    (
        "Event ID 41: The system has rebooted without cleanly shutting down first. "
        "2026-12-01T03:00:00Z",
        "event id: 41 - the system has rebooted without cleanly shutting down first "
        "(2026-12-02T04:10:00Z)",
    ),
    (
        "HTTP Error 503. The service is unavailable.",
        "  http error 503. the service is UNAVAILABLE. ",
    ),
    ("Error code - caa70004", "Teams says: We're sorry, error code CAA70004"),
]
# Without a code, the same message about other files and people only looks alike.
ALIKE = [
    (
        "The file C:\\Users\\ana\\AppData\\Local\\Microsoft\\Outlook\\ana@contoso.com.ost is "
        "not an Outlook data file (.ost).",
        "The file C:\\Users\\bo\\AppData\\Local\\Microsoft\\Outlook\\bo@contoso.com.ost is "
        "not an Outlook data file (.ost).",
    ),
    (
        "Access to the path 'C:\\ProgramData\\App\\a.json' is denied at 2026-12-01 10:00:00",
        "Access to the path '/var/lib/app/b.json' is denied at 2026-12-02 11:30:00",
    ),
]
DIFFERENT = [
    ("Windows Update failed 0x80070005", "Windows Update failed 0x800f0922"),
    ("AADSTS50126: Error validating credentials", "AADSTS50076: multi-factor authentication"),
    ("Error 809: the remote server is not responding", "Error 800: VPN tunnels failed"),
    ("HTTP Error 503. The service is unavailable.", "HTTP Error 401. Unauthorized."),
    ("Printer offline", "Printer jammed"),
    (
        "The file ana.ost is not an Outlook data file (.ost).",
        "We're sorry-we've run into an issue. Error code - caa70004",
    ),
    ("Event ID 41: rebooted", "Event ID 1000: application crashed"),
]


@pytest.mark.parametrize(("a", "b"), SAME)
def test_one_error_twice_is_the_same_error(a: str, b: str) -> None:
    assert same_error(a, b)
    assert look_alike(a, b)


@pytest.mark.parametrize(("a", "b"), ALIKE)
def test_one_message_about_other_files_looks_alike(a: str, b: str) -> None:
    assert look_alike(a, b)
    assert not same_error(a, b)  # SPEC: neither equal texts nor a shared code


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_different_errors_do_not_match(a: str, b: str) -> None:
    assert not same_error(a, b)
    assert not look_alike(a, b)


def test_exact_text_ignores_case_and_surrounding_whitespace_only() -> None:
    assert same_error("  The print spooler service is not running.\n", "the PRINT spooler "
                      "service is not running.")  # fmt: skip
    assert not same_error("The print spooler service is not running.", "The print spooler "
                          "service is  not running.")  # fmt: skip


def test_codes_in_the_summary_count_too() -> None:
    assert same_error("", "Access is denied", a_summary="Update fails with 0x80070005",
                      b_summary="0x80070005 again")  # fmt: skip
    assert not signatures("")


def test_exception_names_and_normalised_text() -> None:
    text = "System.UnauthorizedAccessException: Access to the path 'C:\\x.json' is denied."
    assert [s.value for s in exceptions(text)] == ["system.unauthorizedaccessexception"]
    assert normalised("Login at 10:31:22 AM from 10.0.0.7 failed for bob@x.com (id 42)") == (
        "login at from failed for id"
    )


def test_words_for_search_and_descriptions() -> None:
    words = terms("Outlook keeps asking for the password", "0x800CCC0E SMTP")
    assert words == ["0x800ccc0e", "outlook", "asking", "password", "smtp"]
    assert describe("http:503") == "HTTP 503"
    assert describe("aadsts:50126") == "AADSTS50126"
    assert describe("exact:abc") == "the same error text"
    assert first_line("\n  first\nsecond") == "first"


def test_numbers_are_words_for_kb_unless_a_code_holds_them() -> None:
    assert terms("4625") == []  # `similar` leaves bare numbers out
    assert terms("4625", numbers=True) == ["4625"]
    assert terms("kb 503 on the portal", numbers=True) == ["503", "portal"]
    assert terms("12 4625", numbers=True) == ["4625"]  # short numbers stay out
    # The number is the code's value: searched as the code the text holds.
    assert terms("error 80070005", numbers=True) == ["0x80070005"]
    assert terms("event 4625", numbers=True) == ["event"]


def test_a_number_before_a_reason_word_is_an_http_status_only_when_it_fits() -> None:
    """Microsoft 365 unauthorized is no HTTP status 365: a status and a reason word count only
    when the number is a real status the word names (or HTTP/status says so)."""
    assert not same_error(
        "Microsoft 365 unauthorized: your sign-in was blocked",
        "Office 365 unauthorized - the licence has expired",
    )
    assert codes("Microsoft 365 unauthorized: your sign-in was blocked") == []
    assert codes("Office 365 forbidden") == []
    assert codes("Sync of 250 not found items") == []  # 250 is no HTTP status
    assert codes("Server said 404 unauthorized") == []  # 404 is not "unauthorized"
    assert {s.key for s in codes("(403) Forbidden")} == {"http:403"}
    assert {s.key for s in codes("413 Request Entity Too Large")} == {"http:413"}
    assert {s.key for s in codes("413 Payload Too Large")} == {"http:413"}
    assert {s.key for s in codes("The request failed with HTTP status 401: Unauthorized")} == {
        "http:401"
    }
    assert same_error("Upload failed: 504 Gateway Timeout", "HTTP 504 from the proxy")


def test_every_reason_phrase_and_dot_nets_wording_name_their_status() -> None:
    """.NET's WebException says `(503) Server Unavailable` (its own wording): that text carried
    no code, so it was not the same error as `HTTP 503`. Every error phrase of HTTPStatus counts,
    in the wordings of each Python version."""
    net = (
        "ADAL Error: service_unavailable, The remote server returned an error: (503) Server "
        "Unavailable."
    )
    assert {s.key for s in codes(net)} == {"http:503"}
    assert same_error(net, "The portal answers HTTP 503 all morning")
    for text, status in [
        ("(411) Length Required.", "411"),
        ("422 Unprocessable Entity", "422"),
        ("422 Unprocessable Content", "422"),
        ("414 Request-URI Too Long", "414"),
        ("(507) Insufficient Storage", "507"),
        ("511 Network Authentication Required", "511"),
        ("413 Content Too Large", "413"),
    ]:
        assert {s.key for s in codes(text)} == {f"http:{status}"}, text
    assert codes("Server said 404 unavailable for legal reasons") == []


def test_words_that_say_a_hex_value_is_no_code_are_whole_words() -> None:
    # "database" and "filehandle" end in "base" and "handle" but say nothing about the value.
    assert same_error("Cannot open database 0x80004005", "Unspecified error 0x80004005")
    assert {s.key for s in codes("Cannot open database 0x80004005")} == {"hex:0x80004005"}
    assert {s.key for s in codes("Invalid filehandle 0x80070006")} == {"hex:0x80070006"}
    # What the list is for still holds: addresses, offsets, time stamps, ids are no codes.
    assert codes("Module loaded at base address 0x7ff6a0000000") == []
    assert codes("Image base: 0x00400000") == []
    assert codes("Invalid handle 0x000001a4") == []
    assert codes("Faulting module timestamp 0x6554e3a1") == []
    assert codes("time stamp: 0x6554e3a1") == []
    assert not same_error("Image base 0x80000000", "Kernel base 0x80000000")


def test_a_date_after_event_is_no_event_id() -> None:
    assert codes("Backup job failed, see event 2026-12-08 in the log") == []
    assert codes("Printer offline since event 12/08/2026") == []
    assert not same_error(
        "Backup job failed, see event 2026-12-08", "Printer offline since event 2026-12-01"
    )
    # A real event ID next to a date still counts, both ways round.
    assert {s.key for s in codes("Event 41 2026-12-08: the system has rebooted")} == {"event:41"}
    assert same_error("event id 41 on 2026-12-09", "2026-12-01 Event 41: rebooted")
    assert not same_error("event 2026-12-08: Event 41", "event 2026-12-08: Event 1000")


def test_a_zero_code_is_no_error_code() -> None:
    """0x0 (S_OK, ERROR_SUCCESS) names no error: different errors that each add 'Extended
    error code: 0x0' (Remote Desktop) or '(0x00000000)' do not share it."""
    rdp = "Error code: 0x204 Extended error code: 0x0"
    assert {s.key for s in codes(rdp)} == {"hex:0x00000204"}
    assert codes("The operation completed successfully (0x00000000)") == []
    assert codes("Installer exited with error 00") == []
    assert not same_error(rdp, "Error code: 0x507 Extended error code: 0x0")
    assert same_error(rdp, "Remote Desktop: Error code: 0x204 Extended error code: 0x0 again")


def test_a_crashed_process_start_time_is_no_error_code() -> None:
    crash = (
        "Exception code: 0xc0000005\nFault offset: 0x000000000005f17c\nFaulting process id: "
        "0x1f40\nFaulting application start time: 0x01da4b1c2d3e4f50"
    )
    assert [s.key for s in codes(crash)] == ["hex:0xc0000005"]


def sign_in_page(code: str, request: str, correlation: str, when: str) -> str:
    """The Entra sign-in page's troubleshooting details as 'Copy info to clipboard' gives them:
    the AADSTS code without its prefix, then ids of this one attempt."""
    return (
        "You cannot access this right now\nYour sign-in was successful but does not meet the "
        "criteria to access this resource.\nTroubleshooting details\nIf you contact your "
        f"administrator, send this info to them.\nError Code: {code}\nRequest Id: {request}\n"
        f"Correlation Id: {correlation}\nTimestamp: {when}\nApp name: Microsoft Office\n"
        "App id: d3590ed6-52b3-4102-aeff-aad2292ab01c\nIP address: 203.0.113.7\n"
        "Device identifier: Not available\nDevice platform: Windows 10\nDevice state: Unregistered"
    )


CA_PAGE = sign_in_page(
    "53003", "8f7c2a1e-4b3d-4e5f-9a10-2b3c4d5e6f70", "e1d2c3b4-a5f6-4788-9900-aabbccddeeff",
    "2026-12-10T09:12:03.456Z",
)  # fmt: skip
MFA_PAGE = sign_in_page(
    "500121", "c0ffee00-1111-4222-8333-444455556666", "a1b2c3d4-0000-4000-8000-000000000001",
    "2026-12-11T17:40:55.001Z",
)  # fmt: skip
PASSWORD_PAGE = sign_in_page(
    "50126", "8f7c2a1e-4b3d-4e5f-9a10-2b3c4d5e6f71", "e1d2c3b4-a5f6-4788-9900-aabbccddeef0",
    "2026-12-12T08:00:00.000Z",
)  # fmt: skip


def test_the_sign_in_page_error_code_is_its_aadsts_code() -> None:
    """Entra's sign-in page shows 'Error Code: 53003' for AADSTS53003 (its docs: the code seen
    in the browser, prefixed AADSTS): with the page's troubleshooting details, or where the
    text names Entra, it is that AADSTS code, six and seven digits included."""
    assert [s.key for s in codes(CA_PAGE)] == ["aadsts:53003"]
    assert same_error(CA_PAGE, "AADSTS53003: Access has been blocked by Conditional Access "
                      "policies. The access policy does not allow token issuance.")  # fmt: skip
    assert [s.key for s in codes(MFA_PAGE)] == ["aadsts:500121"]
    assert same_error(MFA_PAGE, "AADSTS500121: Authentication failed during strong "
                      "authentication request.")  # fmt: skip
    assert same_error(PASSWORD_PAGE, "AADSTS50126: Error validating credentials")
    assert not same_error(CA_PAGE, PASSWORD_PAGE)
    assert {s.key for s in codes("Conditional Access blocks Outlook: error code 53003")} == {
        "aadsts:53003"
    }
    # Alone, a five-digit 'error code' may be any product's: a generic code, as before; six
    # digits after 'error code' are read too.
    assert {s.key for s in codes("Error Code: 53003")} == {"error:53003"}
    assert {s.key for s in codes("Error Code: 500121")} == {"error:500121"}
    assert same_error("Error Code: 500121", "the app says error code 500121 again")


def test_ids_and_timestamps_of_a_sign_in_are_no_codes() -> None:
    """Request, correlation and app ids are GUIDs: none is a hex code (Office's app id
    d3590ed6-... made every Office sign-in failure one error), nor is the timestamp."""
    assert not same_error(CA_PAGE, PASSWORD_PAGE)
    assert not same_error(CA_PAGE.replace("53003", "50076"), MFA_PAGE)
    page_codes = {s.key for s in signatures(CA_PAGE) if s.kind in ("hex", "error", "http")}
    assert page_codes == set()
    assert codes("Request Id: 8f7c2a1e-4b3d-4e5f-9a10-2b3c4d5e6f70") == []
    assert codes("App id: caa70004-52b3-4102-aeff-aad2292ab01c") == []
    assert codes("Timestamp: 2026-12-10T09:12:03.456Z") == []
    # A code beside a GUID still counts.
    assert {s.key for s in codes("Error 0x80070005 (id 8f7c2a1e-4b3d-4e5f-9a10-2b3c4d5e6f70)")} == {
        "hex:0x80070005"
    }


def test_http_successes_and_redirects_are_no_error_codes() -> None:
    """200 OK or a 302 is no error: two tickets that mention one are not the same error."""
    for text in ("HTTP 200 OK", "HTTP/1.1 302 Found", "status code 200", "response code 304",
                 "HTTP status: 201"):  # fmt: skip
        assert codes(text) == [], text
    assert not same_error("Sync says HTTP 200 OK but no mail arrives", "Portal: HTTP 200 OK, "
                          "then a blank page")  # fmt: skip
    assert {s.key for s in codes("HTTP/1.1 404 Not Found")} == {"http:404"}
    assert {s.key for s in codes("response code 503")} == {"http:503"}


def test_code_401_is_the_http_status() -> None:
    """'code 401' and 'error code 401' name the HTTP status as 'Error 401' does."""
    assert {s.key for s in codes("The API returns code 401")} == {"http:401"}
    assert {s.key for s in codes("Error Code: 403")} == {"http:403"}
    assert same_error("Login page returns code 401", "HTTP 401 Unauthorized")
    assert {s.key for s in codes("code 809")} == {"error:809"}  # no HTTP status


def test_zip_area_and_pin_codes_are_no_error_codes() -> None:
    """A number after 'zip code', 'area code', 'PIN code'... says where or who, not what
    failed: tickets from one office are not one error. Other codes still count."""
    for text in ("New laptop for the office at zip code 10001", "area code 404",
                 "PIN code 4821 does not open the door", "ZIP/postal code 10001-1234",
                 "verification code 48213 never arrives"):  # fmt: skip
        assert codes(text) == [], text
    assert not same_error("Printer offline at zip code 10001", "VPN slow, zip code 10001")
    assert {s.key for s in codes("Setup failed with code 1603")} == {"error:1603"}
    assert {s.key for s in codes("Error code 30015-11")} == {"office:30015-11"}


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("Fehler 809: Die Netzwerkverbindung konnte nicht hergestellt werden", "error:809"),
        ("Erreur 809 : La connexion réseau n'a pas pu être établie", "error:809"),
        ("Errore 809: impossibile stabilire la connessione", "error:809"),
        ("Código de error: 809", "error:809"),
        ("Fout 809 bij het verbinden", "error:809"),
        ("Fehlercode: 720", "error:720"),
        ("Code d'erreur : 720", "error:720"),
        ("Fehler 404 beim Öffnen der Seite", "http:404"),
        ("Ereignis-ID: 4625", "event:4625"),
        ("ID de l\u2019événement : 4625", "event:4625"),
        ("Id. del evento: 4625", "event:4625"),
        ("ID evento: 4625", "event:4625"),
        ("Gebeurtenis-id: 4625", "event:4625"),
    ],
)
def test_a_localised_windows_writes_error_numbers_and_event_ids_too(text: str, key: str) -> None:
    """A German, French, Spanish, Italian or Dutch Windows says `Fehler 809`, `Erreur 809`,
    `Ereignis-ID: 4625`: those carried no code, so two German reports of VPN error 809 (in
    other words) were not the same error, nor one in English and one in German."""
    assert {s.key for s in codes(text)} == {key}


def test_the_same_numbered_error_in_two_languages_is_the_same_error() -> None:
    assert same_error(
        "Fehler 809: Die Netzwerkverbindung zwischen Ihrem Computer und dem VPN-Server konnte "
        "nicht hergestellt werden",
        "Error 809: The network connection between your computer and the VPN server could not "
        "be established",
    )
    assert not same_error("Fehlermeldung 12 im Protokoll", "Terror 12 im Protokoll")
    assert codes("Evento 2026-12-08 im Kalender") == []


def test_exact_texts_that_read_the_same_are_equal() -> None:
    """A file name pasted from macOS is decomposed (NFD: `U` + combining diaeresis), and text
    copied from a web page or Teams may carry a zero-width space or byte order mark: the
    exact error text reads the same but was another text, so the two tickets were not the
    same error."""
    typed = "Zugriff auf Übersicht.xlsx verweigert"
    pasted = "\ufeff" + unicodedata.normalize("NFD", typed) + "\u200b"
    assert pasted != typed
    assert same_error(typed, pasted)
    assert not same_error(typed, "Zugriff auf Uebersicht.xlsx verweigert")
