"""Is a resolution note worth keeping? A small heuristic that can explain its verdict.

A useful note says *what was done* (an action verb: cleared, reinstalled, reset…) *to what*
(an object signal: a KB id, a command, a host or asset name, a setting path, a known system
such as a printer, VPN or mailbox, or a named product right after the verb), and is more than a
filler phrase. A reference to another ticket of this help desk (`HD-12`), or to this one in
the PSA (`INC0010001`), names no system; nor does text in backticks made only of filler (`` `it`
``), a plea capitalised as a name ("Reset Please Help") or the domain of an e-mail address. A
note that only repeats the ticket's summary (or error text) says nothing of the fix.
Terse notes as technicians write them pass: a command as run says both what and to what
(`ipconfig /flushdns`), two words do for a real action on a named thing ("reinstalled teams",
not "reset pw"); German, Spanish and French action words and common typos ("cleard") are read.
A restart is an action only on what it names in its own clause ("Restarted the print spooler"),
not beside what works now ("Rebooted, Outlook works now" is "rebooted and it worked").
Checks run in order and the first failure is the reason given to the technician, with a worked
example. A note that only says what will be done, what could not be done or what was tried
("Will reinstall teams tomorrow", "Tried to reboot PRN-0042, didn't help") says nothing of the
fix either; said beside what fixed it, it passes (see "what was done" below). Whether the text is
an answer at all (empty, a placeholder, too few words) is judged by `handlers.answers`, as for
every form; this module adds what a resolution note needs on top.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from cards.model import Inline, Rich, Typed
from handlers.answers import (
    MIN_WORDS,
    PLACEHOLDER_WORDS,
    Problem,
    made_only_of,
    problem,
    shown,
    words,
)

EXAMPLE = "e.g. 'Cleared the print queue on PRN-0042 and reinstalled the HP UPD 7.1 driver'"
UNDONE = (
    "That says what will be done, or what was tried or could not be done, not what fixed it: "
    f"say what you did that worked, {EXAMPLE}."
)
MIN_CHARS = 15
MAX_CHARS = 3000
DEFAULT_TICKET_PREFIX = "HD"

# Words that only say "it is fixed now"; a note made of nothing else is filler.
FILLER_WORDS = frozenset(
    """
    a all again an and are as at after back be been by call called closed closing close done
    everything fine fix fixed fixes for good got has have he her his i is issue issues it its
    itself just longer na n/a no now of ok okay on per problem problems re reboot rebooted
    rebooting resolved resolve restart restarted self she solved sorted that the their then
    they this ticket to up user users was we went were with work worked working works seems
    seemed apparently anymore able can could
    """.split()
)

# Words that name nothing: filler, and the pleas and placeholders of every form.
_EMPTY_WORDS = FILLER_WORDS | PLACEHOLDER_WORDS

# Base forms of verbs that say what was done. "fix", "resolve", "solve" and "sort" are left
# out on purpose: they say *that* it was fixed, not *what* was done.
_ACTION_BASES = """
    add adjust allow allowlist apply approve archive assign block change clean clear
    configure connect convert copy correct create delete deploy disable disconnect edit
    enable enrol enroll extend flush follow force format grant import increase install join
    kill license link lock log map migrate modify mount move patch provision purge
    push reactivate readd reapply reassign reauthorize rebind rebuild reconfigure reconnect
    recreate redeploy reenable reenrol reenroll refresh regenerate register reimage reinstall rejoin
    reload remap remove rename renew repair replace reregister reseat reset reshare resize restore
    resume resync revert revoke roll rollback rotate run scan set share start stop suspend swap
    switch sync
    tighten toggle unblock uninstall unlock unmap update upgrade whitelist wipe
    calibrate decommission decrypt deprovision downgrade encrypt exempt exclude reenter rekey
    relaunch relicense relink remediate reprovision republish reserve retire truncate unhide
    unlink unpair
    """.split()
# What technicians write in German, Spanish and French notes: past participles and preterites
# of the same actions (a note is kept in the language it was written in).
_FOREIGN_ACTIONS = frozenset(
    """
    installiert neuinstalliert deinstalliert gelöscht geleert zurückgesetzt entsperrt ersetzt
    getauscht ausgetauscht aktualisiert erstellt eingerichtet konfiguriert hinzugefügt entfernt
    verbunden freigeschaltet aktiviert deaktiviert repariert zugewiesen angelegt geändert
    umgestellt bereinigt
    instalado instaló reinstalado reinstaló desinstalado desinstaló restablecido restableció
    reseteado reseteó desbloqueado desbloqueó borrado borró eliminado eliminó limpiado limpió
    vaciado vació actualizado actualizó reemplazado reemplazó cambiado cambió configurado
    configuró reconfigurado reconfiguró creado creó recreado recreó agregado agregó añadido
    añadió asignado asignó reparado reparó habilitado habilitó deshabilitado deshabilitó
    reconectado reconectó sustituido sustituyó
    installé réinstallé désinstallé réinitialisé débloqué déverrouillé supprimé vidé effacé
    remplacé changé configuré reconfiguré créé recréé ajouté attribué réparé activé désactivé
    reconnecté nettoyé
    wiederhergestellt erneuert verschoben umbenannt aufgesetzt zugeordnet gemappt erteilt
    synchronisiert freigegeben eingespielt importiert exportiert erweitert erhöht berechtigt
    eingebunden getrennt korrigiert
    """.split()
)
# Spanish -ar, -er/-ir and French -er verbs by stem: each gives its participles (agreeing in
# gender and number: "reinstalada", "réinitialisée") and, for Spanish, the preterite that a
# note in the first or third person uses ("reinstalé", "desbloqueó", "restablecí").
_SPANISH_AR = """
    instal reinstal desinstal resete desbloque borr elimin limpi vaci actualiz reemplaz cambi
    configur reconfigur cre recre agreg asign repar habilit deshabilit reconect restaur renov
    renombr import export sincroniz resincroniz modific otorg ampli aument mape migr activ
    desactiv quit ajust aplic liber reserv vincul desvincul reasign regener recuper bloque
    """.split()
_SPANISH_ER = "restablec añad sustitu correg mov conced reconstru".split()
_FRENCH_ER = """
    install réinstall désinstall réinitialis débloqu déverrouill supprim vid effac remplac
    chang configur reconfigur cré recré ajout attribu répar activ désactiv reconnect nettoy
    restaur renouvel déplac renomm import export synchronis resynchronis modifi corrig
    accord mapp migr appliqu libér réserv assign regénér régénér récupér bloqu réactiv
    """.split()


def _spanish_preterite(stem: str, ending: str) -> str:
    """`stem` + "é" with the spelling a hard c, g or z needs before it ("apliqué", "agregué",
    "actualicé")."""
    for hard, soft in (("c", "qu"), ("g", "gu"), ("z", "c")):
        if ending == "é" and stem.endswith(hard):
            return stem[: -len(hard)] + soft + ending
    return stem + ending


_ROMANCE_FORMS = frozenset(
    {_spanish_preterite(stem, end) for stem in _SPANISH_AR for end in ("é", "ó")}
    | {stem + "ad" + end for stem in _SPANISH_AR for end in ("o", "a", "os", "as")}
    | {stem + end for stem in _SPANISH_ER for end in ("ido", "ida", "idos", "idas", "í", "ió")}
    | {stem + "yó" for stem in _SPANISH_ER if stem.endswith("u")}  # sustituyó, reconstruyó
    | {"corrigió"}
    | {stem + end for stem in _FRENCH_ER for end in ("é", "ée", "és", "ées")}
    | {"mis", "remis"}  # "mis à jour", "remis en place"
)
_IRREGULAR = frozenset(
    "ran rerun reran rebuilt reset set put sent rewrote wrote made took gave reissue reissued "
    "issued shut given resent shrank shrunk hid freed emptied backed released exported "
    # Nouns as well ("a new release", "the PIN"): only their past forms say what was done.
    "compacted paired expanded quarantined pinned unpinned".split()
)
# Restarting something is only an action when it names what was restarted; "rebooted" alone
# is the classic filler.
_WEAK_ACTIONS = frozenset(
    "reboot rebooted rebooting restart restarted restarting power powered bounce bounced "
    "neugestartet gestartet reiniciado reinició redémarré".split()
)

# Specific things a technician acts on (lower case, matched as whole words or phrases).
SYSTEM_NOUNS = frozenset(
    """
    account accounts ad adapter agent antivirus app application authenticator autopilot backup
    battery bios bitlocker browser cable cache calendar camera cert certificate certificates
    chrome citrix cookie cookies credential credentials crm database defender dhcp disk dns dock
    docking domain driver drivers edge entra erp exchange extension firewall firmware gateway
    gpo group groups headset intune ip jira keyboard license licence licenses ldap mailbox
    mailboxes mdm mfa monitor mouse nic o365 m365 office okta onedrive os ost ou outlook
    partition password passwords patch permission permissions plugin port printer pst printers
    profile proxy queue ram rdp registry router saml sccm server service services sharepoint
    smtp spooler sql ssd ssid sso subnet switch teams tenant token toner tray vdi vlan vm vpn
    webcam wifi wi-fi windows zoom salesforce sap slack macos
    globalprotect forticlient anyconnect webex keychain fuser codec codecs
    mainboard motherboard touchscreen touchpad trackpad charger dongle hdd quota
    drucker druckertreiber warteschlange druckwarteschlange profil kennwort passwort konto
    postfach treiber impresora perfil contraseña cuenta buzón controlador imprimante compte
    pilote zertifikat lizenz netzlaufwerk gruppe berechtigung berechtigungen
    postfachberechtigung certificado licencia caché servidor correo tóner grupo certificat
    sauvegarde serveur
    """.split()
)
# Systems specific enough that a two-word note naming one is complete ("Reinstalled teams",
# "Swapped toner", "Reset MFA"); "Reset pw" or "Cleared cache" still needs the rest.
_NAMED_SYSTEMS = frozenset(
    """
    authenticator autopilot bios bitlocker chrome citrix defender dns edge entra exchange
    intune jira m365 macos mfa o365 office okta onedrive ost outlook pst salesforce sap
    sharepoint slack spooler teams toner vpn windows zoom globalprotect forticlient anyconnect
    webex keychain
    """.split()
)
_OS_NOUNS = frozenset({"windows", "os", "macos"})
# Exchange's Send As permission, not "send as soon as".
_SEND_AS = re.compile(r"\bsend[- ]?as\b(?!\s+(?:soon|well)\b)", re.IGNORECASE)
_SYSTEM_PHRASES = tuple(
    "active directory|group policy|print queue|mapped drive|network drive|shared mailbox|"
    "distribution list|recovery key|conditional access|dns record|user profile|"
    "online archive|recycle bin|copia de seguridad|boîte aux lettres|mot de passe".split("|")
)

# `KB0012345`, `KB 4412`, and with a dash any number (`KB-42`); "KB 12" may be a size.
# A drive named by its letter: "the H: drive", "Laufwerk S:" (not "Note:" or "A: yes").
_DRIVE_LETTER = re.compile(
    r"\b[A-Z]:\s*(?:drive|laufwerk|unidad|lecteur)\b|\b(?:drive|laufwerk|unidad|lecteur)\s+[A-Z]:(?!\w)",
    re.IGNORECASE,
)
_KB_ID = re.compile(r"\bKB(?:-\d+|\s?\d{3,})\b", re.IGNORECASE)
# A KB article cited as what was followed ("Followed KB0012345", "Resolved per KB-4412",
# "KB0012345 applied"): the article holds the steps, so the note names what was done.
_KB_FOLLOWED = frozenset("per via following followed follow using used".split())
# A knowledge-base page cited by its link as the procedure followed ("Resolved per
# https://…", "Per IT Glue doc https://…"), as the KB article field takes a link: the word
# that cites it right before the link, or before a few words naming the page.
_LINK_FOLLOWED = re.compile(
    r"\b(?:per|via|following|followed|follow|using|used)\s+"
    r"(?:(?:the|this|our|an?|it\s+glue|hudu|confluence|kb|wiki|doc|docs|document|article|"
    r"runbook|page|guide|sop|procedure|steps|in|from|at)\s+){0,4}<?https?://\S+",
    re.IGNORECASE,
)
_BACKTICKS = re.compile(r"`[^`\n]+`")
# Command-line switches outside a known command. A lone "-word" or "/word" is no command ("works
# now -thanks"); these shapes are: a GNU long option (`--force`), two switches in a row
# (`repadmin /syncall /AdeP`), or a program run by name with a switch (`ran repadmin /syncall`).
_LONG_FLAG = re.compile(r"(?<!\S)--[A-Za-z][\w-]+")
_SWITCHES = re.compile(r"(?<!\S)[-/][A-Za-z][\w:-]*\s+[-/][A-Za-z]")
_RUN_WITH_SWITCH = re.compile(
    r"\b(?i:ran|run|runs|running|reran|rerun|executed|execute|executing)\s+"
    r"(?!(?:into|out|across|through|over|the|a|an|it|again)\b)[a-z][\w.-]*"
    r"(?:\s+[^\s/-]\S*){0,2}\s+[-/][A-Za-z]"
)
_POWERSHELL = re.compile(
    r"\b(?:Get|Set|New|Remove|Add|Reset|Enable|Disable|Start|Stop|Restart|Clear|Update|Invoke|"
    r"Install|Uninstall|Test|Repair|Grant|Revoke)-([A-Z][A-Za-z]+)"
)
_COMMAND_NAMES = (
    r"\b(?:gpupdate|ipconfig|sfc|dism|chkdsk|netsh|nslookup|certutil|robocopy|dsregcmd|"
    r"klist|bcdedit|diskpart|winget|choco|msiexec|sudo|systemctl|apt|yum|dnf|brew|repadmin|"
    r"dcdiag|gpresult|wevtutil|tracert|pathping|w32tm|manage-bde|icacls|takeown|schtasks|wmic|"
    r"powercfg|netstat|chown|chmod|chgrp|usermod|useradd|userdel|groupadd|journalctl|umount|"
    r"fsck|nmcli|resolvectl|visudo|crontab|launchctl|diskutil|dscl|scutil|pmset|tmutil|"
    r"networksetup|softwareupdate|pkill|killall|taskkill|cmdkey)\b"
)
_COMMANDS = re.compile(_COMMAND_NAMES, re.IGNORECASE)
# A known command as it was run, with its switch or first argument (`ipconfig /flushdns`).
_COMMAND_RUN = re.compile(_COMMAND_NAMES + r"\s+([-/]?[\w.:\\-]+)", re.IGNORECASE)
_PATH = re.compile(
    r"(?:\b[A-Za-z]:\\|\\\\[\w.$-]+\\|\bHK(?:LM|CU|CR|U|CC)\b|\bHKEY_[A-Z_]+\b|"
    r"(?:^|\s)~?/(?:[\w.-]+/)+[\w.-]*)"
)
# One step of a settings or policy path between named parts: `Settings > Accounts`,
# `Group Policy -> Computer Configuration`. Both sides are capitalised names, not plain words
# ("the laptop -> works now"); `_has_setting_path` also refuses a filler word ("-> Works now").
_SETTING_STEP = re.compile(r"\b([A-Z][\w-]*)\s(?:>|->|→|»)\s([A-Z][\w-]*)")
# Asset tags and host names with a dash or underscore and a digit (`PRN-0042`, `LAPTOP-0192`);
# a ticket number of this help desk looks the same and is taken out first (`_without_tickets`).
_ASSET = re.compile(r"\b[A-Za-z][A-Za-z0-9]*[-_][A-Za-z0-9_-]*\d[A-Za-z0-9_-]*\b")
_CAPS_DIGITS = re.compile(r"\b[A-Z]{2,}\d{2,}\b")
# Group, network and host names of capitalised parts joined by dashes, one part an acronym or
# CamelCase (`SG-Finance-RW`, `Corp-WiFi`); `_is_named` refuses parts that are filler ("OK-Done").
_DASHED_NAME = re.compile(r"(?<![\w-])[A-Z][A-Za-z0-9]*(?:-[A-Z][A-Za-z0-9]*)+(?![\w-])")
# Dotted names; `_is_host` keeps those shaped like a host or domain, not "ok.Closing".
# The domain of an e-mail address (`ana@example.com`) names a person, not a host: not read.
_DOTTED = re.compile(r"(?<![\w.@-])[A-Za-z0-9][\w-]*(?:\.[A-Za-z0-9][\w-]*)+(?![\w-])")
# Top-level domains and internal suffixes that are not also short English words ("it", "me"…).
_TLDS = frozenset(
    """
    com net org edu gov mil int info biz io dev app cloud local lan corp internal intranet home
    arpa uk de fr nl se dk fi ch au ca nz jp eu ie es pl pt cz hu ro gr br mx za ru cn sg hk
    """.split()
)
_IP = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?:/\d{1,2})?\b")
# A product named by its proper name right after the verb: two or more capitalised words
# ("Reinstalled Adobe Acrobat Reader", "the Company Portal"), read by `_names_product`.
_WORD_AT = re.compile(r"\b[A-Za-z][\w-]*")
_PROPER_NAME = re.compile(r"\s+(?:(?:the|a|an)\s+)?([A-Z][\w.+&'-]*(?:\s+[A-Z0-9][\w.+&'-]*)+)")
# Or one word with a capital inside, as vendors name products ("GlobalProtect", "FortiClient").
_CAMEL_NAME = re.compile(r"\s+(?:(?:the|a|an)\s+)?([A-Z][a-z0-9]+[A-Z][A-Za-z0-9]*)\b")


def _forms(base: str) -> set[str]:
    forms = {base, base + "s", base + "ed", base + "ing", base + "es"}
    if base.endswith("e"):
        forms |= {base + "d", base[:-1] + "ing"}
    if base.endswith("y"):
        forms |= {base[:-1] + "ied", base[:-1] + "ies"}
    if re.search(r"[^aeiou][aeiou][bdgklmnprt]$", base):
        forms |= {base + base[-1] + "ed", base + base[-1] + "ing"}
    # The typos of a quick note: "cleard", "uninstalld", "reinstaled".
    if not base.endswith("e"):
        forms.add(base + "d")
    if base.endswith("ll"):
        forms.add(base[:-1] + "ed")
    return forms


ACTION_WORDS = frozenset(
    {form for base in _ACTION_BASES for form in _forms(base)}
    | _IRREGULAR
    | _FOREIGN_ACTIONS
    | _ROMANCE_FORMS
    | _WEAK_ACTIONS
)


def is_filler(note: str) -> bool:
    """True when every word only says that it works now ("rebooted and it worked")."""
    return made_only_of(note, FILLER_WORDS)


def action_words(note: str) -> list[str]:
    return [w for w in words(note) if w in ACTION_WORDS]


def object_signals(
    note: str, *, ticket_prefix: str = DEFAULT_TICKET_PREFIX, references: Sequence[str] = ()
) -> list[str]:
    """Why the note names a thing: which signals it contains (empty: names nothing).
    `references`: other numbers of this very ticket (its id in the PSA), which name no system."""
    note = _without_tickets(note, ticket_prefix, references)
    signals: list[str] = []
    checks = (
        ("KB article", _KB_ID.search(note)),
        ("command", _in_backticks(note)),
        ("command", _LONG_FLAG.search(note)),
        ("command", _SWITCHES.search(note)),
        ("command", _RUN_WITH_SWITCH.search(note)),
        ("command", _POWERSHELL.search(note)),
        ("command", _COMMANDS.search(note)),
        ("path", _PATH.search(note)),
        ("setting path", _has_setting_path(note)),
        ("host or asset", _ASSET.search(note)),
        ("host or asset", _CAPS_DIGITS.search(note)),
        ("host or asset", any(_is_named(m.group()) for m in _DASHED_NAME.finditer(note))),
        ("host name", any(_is_host(m.group()) for m in _DOTTED.finditer(note))),
        ("IP address", _IP.search(note)),
        ("product", _names_product(note)),
    )
    for name, found in checks:
        if found and name not in signals:
            signals.append(name)
    if systems(note):
        signals.append("system")
    return signals


def _without_tickets(note: str, prefix: str, references: Sequence[str] = ()) -> str:
    """The note with this help desk's ticket numbers (`HD-12`, any case) blanked out, and the
    ticket's `references` (its PSA number, `INC0010001`: shown on its card, as a ticket
    number is) as whole words."""
    pattern = rf"(?<![A-Za-z0-9-]){re.escape(prefix)}-\d{{1,12}}\b"
    note = re.sub(pattern, " ", note, flags=re.IGNORECASE)
    for ref in references:
        if ref := ref.strip().lstrip("#"):
            note = re.sub(rf"(?<![\w-])#?{re.escape(ref)}(?![\w-])", " ", note, flags=re.I)
    return note


def _in_backticks(note: str) -> bool:
    """True when text in backticks is a command: it has a word of two letters or more that
    is neither filler nor a plea (`` `it` ``, `` `n/a` `` or `` `.` `` name no command)."""
    return any(
        any(len(w) > 1 and w not in _EMPTY_WORDS for w in words(found.group()))
        for found in _BACKTICKS.finditer(note)
    )


def _has_setting_path(note: str) -> bool:
    """True when a step of a setting path joins two names, neither a filler word nor both
    pleas ("Help -> Assist")."""
    return any(
        not {left.lower(), right.lower()} & FILLER_WORDS
        and not {left.lower(), right.lower()} <= PLACEHOLDER_WORDS
        for left, right in _SETTING_STEP.findall(note)
    )


def _is_named(name: str) -> bool:
    """True for a dashed name whose parts are no filler or plea and one of which has two
    capitals (`SG-Finance-RW`), unlike a capitalised phrase ("Sign-In", "Re-Installed")."""
    parts = name.split("-")
    return not any(part.lower() in _EMPTY_WORDS for part in parts) and any(
        sum(c.isupper() for c in part) >= 2 for part in parts
    )


def _is_host(name: str) -> bool:
    """True for a dotted name shaped like a host or domain: its last label is a known TLD, or
    it has three labels or more, or a label with a digit or a hyphen. A capitalised label after
    the first is a sentence run on after a full stop ("ok.Closing", "Win10.Then"), not a host."""
    labels = name.rstrip(".").split(".")
    last = labels[-1]
    if not last.isalpha() or len(last) < 2:
        return False
    if any(label[:1].isupper() and not label.isupper() for label in labels[1:]):
        return False
    return (
        last.lower() in _TLDS
        or len(labels) >= 3
        or any(c.isdigit() or c == "-" for label in labels for c in label)
    )


def _names_product(note: str) -> bool:
    """True when a verb that says what was done (not a bare restart) is followed by a proper
    name of two or more capitalised words that are not filler ("Reinstalled Adobe Reader")."""
    for verb in _WORD_AT.finditer(note):
        if verb.group().lower().replace("-", "") not in ACTION_WORDS - _WEAK_ACTIONS:
            continue
        name = _PROPER_NAME.match(note, verb.end())
        named = set(words(name.group(1))) if name else set()
        # Not filler, and not only pleas capitalised ("Reset Please Help", "Thank You").
        if named and not named & FILLER_WORDS and not named <= PLACEHOLDER_WORDS:
            return True
        if _CAMEL_NAME.match(note, verb.end()):
            return True
    return False


def systems(note: str) -> set[str]:
    """Known systems the note names (words and phrases from the lists above)."""
    lowered = note.lower()
    # The parts of a hyphenated word too: "Outlook-Profil" names Outlook.
    parts = {part for w in _WORD_AT.findall(lowered) for part in w.split("-")}
    found = (set(words(note)) | parts) & SYSTEM_NOUNS
    if _SEND_AS.search(note):
        found.add("send as")
    if _DRIVE_LETTER.search(note):
        found.add("drive")
    return found | {p for p in _SYSTEM_PHRASES if p in lowered}


def note_problem(
    note: str,
    *,
    ticket_prefix: str = DEFAULT_TICKET_PREFIX,
    references: Sequence[str] = (),
    reported: Mapping[str, str] | None = None,
) -> Inline | None:
    """Why the resolution note is not good enough, with an example; None when it is.
    `ticket_prefix`: this help desk's ticket numbers (`HD-12`), which name no system, nor do
    the ticket's other `references` (its PSA number). `reported`: what the ticket says of the
    problem, by name ("summary": …): a note that only repeats one says nothing of the fix."""
    text = note.strip()
    verdict = problem(text, min_words=MIN_WORDS)
    if verdict is Problem.EMPTY:
        return f"Write what you did and to what, {EXAMPLE}."
    if len(text) > MAX_CHARS:
        return f"Keep the resolution note under {MAX_CHARS} characters."
    if verdict is Problem.PLACEHOLDER:
        return Rich(
            "'",
            Typed(shown(text)),
            f"' is a placeholder, not a resolution: say what you did to what, {EXAMPLE}.",
        )
    if is_filler(text):
        return f"That only says it works now, not what was done to what. Describe it, {EXAMPLE}."
    for name, said in (reported or {}).items():
        if (told := _meaningful(said)) and told == _meaningful(text):
            return f"That repeats the ticket's {name}: say what you did to fix it, {EXAMPLE}."
    if _LINK_FOLLOWED.search(text) and not _nothing_done(text, ticket_prefix, references):
        return None
    if kb := _KB_ID.search(_without_tickets(text, ticket_prefix, references)):
        if set(words(text)) & (_KB_FOLLOWED | (ACTION_WORDS - _WEAK_ACTIONS)):
            return UNDONE if _nothing_done(text, ticket_prefix, references) else None
        if verdict is Problem.TOO_SHORT or len(text) < MIN_CHARS:
            article = Typed(shown(kb.group()))
            return Rich(
                "Say what you did with ",
                article,
                ", e.g. 'Followed ",
                article,
                "' or 'Followed ",
                article,
                " to re-register the Authenticator app'.",
            )
    command = _runs_command(_without_tickets(text, ticket_prefix, references))
    short = verdict is Problem.TOO_SHORT or len(text) < MIN_CHARS
    if short and not (command or _short_but_complete(text, ticket_prefix, references)):
        return f"Too short to help the next technician: say what you did to what, {EXAMPLE}."
    actions = action_words(text)
    if not actions and not command:
        return (
            "Say what you did (cleared, reinstalled, reset, replaced, reconfigured…), "
            f"not only that it is fixed, {EXAMPLE}."
        )
    signals = object_signals(text, ticket_prefix=ticket_prefix, references=references)
    if not signals:
        return (
            "Name what you did it to: a system (printer, VPN, mailbox…), a setting, a "
            f"command, a host or asset name, or a KB id, {EXAMPLE}."
        )
    if _nothing_done(text, ticket_prefix, references):
        return UNDONE
    if (
        all(a in _WEAK_ACTIONS for a in actions)
        and not command
        and not _restarted_something(text, ticket_prefix, references)
    ):
        return f"A reboot alone teaches nothing: say what was restarted or changed, {EXAMPLE}."
    return None


def _restarted_something(text: str, ticket_prefix: str, references: Sequence[str]) -> bool:
    """True when a restart names what was restarted in its own clause ("Restarted the print
    spooler", "PRN-0042 power cycled"), not only the operating system; a system that only
    "works now" in another clause was not restarted ("Rebooted, Outlook works now")."""
    for clause in _CLAUSE_BREAK.split(text.replace("\u2019", "'")):
        if not clause or not set(words(clause)) & _WEAK_ACTIONS:
            continue
        signals = object_signals(clause, ticket_prefix=ticket_prefix, references=references)
        if signals and not (signals == ["system"] and _only_os(clause)):
            return True
    return False


def _runs_command(note: str) -> bool:
    """True when the note is a command as it was run: a cmdlet (`Reset-ComputerMachinePassword`)
    or a known command with a switch or argument (`ipconfig /flushdns`). The command says what
    was done, so it needs no verb beside it."""
    if any(noun.lower() not in _EMPTY_WORDS for noun in _POWERSHELL.findall(note)):
        return True
    return any(
        not made_only_of(found.group(1), _EMPTY_WORDS) for found in _COMMAND_RUN.finditer(note)
    )


def _short_but_complete(text: str, ticket_prefix: str, references: Sequence[str]) -> bool:
    """Two words can be the whole fix when they are a real action on a named thing
    ("Reinstalled teams", "Swapped toner", "Replaced LT-4471"), not on a generic one ("Reset
    pw", "Cleared cache") nor a bare restart."""
    if len(words(text)) < MIN_WORDS - 1:
        return False
    if not set(action_words(text)) - _WEAK_ACTIONS:
        return False
    signals = object_signals(text, ticket_prefix=ticket_prefix, references=references)
    return bool(set(signals) - {"system"} or systems(text) & _NAMED_SYSTEMS)


def _meaningful(text: str) -> list[str]:
    """The words of `text` that say something, in order: the summary pasted back with "done"
    or "thanks" added is still the summary."""
    return [w for w in words(text) if w not in _EMPTY_WORDS]


def _only_os(text: str) -> bool:
    """True when the only system named is the operating system a plain reboot restarts."""
    return systems(text) <= _OS_NOUNS


# -- what was done, not what will be or could not be --------------------------------------------
#
# "Will reinstall teams tomorrow", "Could not clear the print queue", "Tried to reboot PRN-0042,
# didn't help" name a system and an action, yet say nothing of how the ticket was fixed. The note
# is read clause by clause (split at punctuation and at "and", "so", "then", "but", "who"…); a
# clause counts as done unless
# - a word of intent, inability or trial comes before its verb ("will", "going to", "need to",
#   "could not", "unable to", "tried to", "waiting for", "escalated to", "if"…); after the verb it
#   describes the thing ("Replaced the fuser that would not heat", "Set the GPO to be enforced");
# - it names a time to come or an open state anywhere ("tomorrow", "next week", "TBD", "pending");
# - it says that it failed ("Reboot didn't help", "Reinstall of the driver failed"); a failure
#   said on its own ("…, didn't help", "…, no luck", "…but still crashing") says so of every
#   clause before it, unless it is a reason ("…because the repair did not help");
# - it goes on the plain form of the verb before it ("Will clear the cache, reinstall Teams and
#   rebuild the profile", "Could not clear the queue or restart the spooler"), or follows a
#   heading ("Plan:", "Next steps:") or an "if" clause in the same sentence.
# A verb that reads as done as well ("reset", "set") is read as done, and a bare instruction
# ("Reinstall Teams") too: terse notes are written that way. A trial that a later clause says
# worked ("Tried clearing the cache and it worked") is done.
# The note needs at least one clause done: a real action (not a bare restart of nothing named), a
# command as run, or a KB article followed. What it was done to may be named in another clause
# ("Teams cache could not be cleared, so deleted the folder and reinstalled").

# Text in quotes or backticks is a name (a setting, a button, a command), not the note's words:
# "Enabled 'Do not disturb'" says nothing of what was not done.
# (Curly closing quotes are read as apostrophes first: "didn\u2019t".)
_QUOTED = re.compile(
    r"`[^`\n]*`|\"[^\"\n]*\"|\u201c[^\u201d\n]*\u201d|\u2018[^'\n]*'|\u00ab[^\u00bb\n]*\u00bb"
    r"|(?<!\w)'[^'\n]*'(?!\w)"
)
# Where a clause ends: a sentence ends ("hard": what follows carries nothing over) or a clause
# goes on ("soft": a plain verb after it carries on the one before).
_CLAUSE_BREAK = re.compile(
    r"(?P<hard>[;!?\n]|\.(?=\s|$)|\b(?:but|so|because|after|since|although|though|however|who|"
    r"instead|until|aber|weil|pero|porque|entonces|después|mais|donc|car)\b)"
    r"|(?P<soft>,|:(?=[\s*_]|$)|\s-{1,2}\s|[\u2013\u2014]|->|=>|→|\s(?:\+|&&?|/)\s|[()\[\]]|"
    r"\b(?:and|then|und|dann|danach|y|luego|et|puis|ensuite)\b)",
    re.IGNORECASE,
)
# Before the verb: intent, inability, trial, hand-over ("Escalated to network to reset the VPN").
_NOT_YET = (
    r"will|shall|\w+'ll|gonna|going\s+to|plan(?:s|ned|ning)?\s+to|planned|intend(?:s|ed)?\s+to|"
    r"needs?\s+to|ha(?:ve|s)\s+to|must|should|would|ought\s+to|to\s+be|wants?\s+to|about\s+to|"
    r"waiting\s+(?:for|on)|wait\s+(?:for|on)|awaiting|escalat\w*|"
    r"hand(?:ed|ing)?\s+(?:over\s+|off\s+)?to|pass(?:ed|ing)?\s+(?:on\s+|over\s+)?to|"
    r"forward(?:ed|ing)?\s+to|if|unless|in\s+case|"
    r"wird|werden|werde|soll|sollte|muss|müssen|geplant|"
    r"se\s+va\s+a|va\s+a|vamos\s+a|voy\s+a|será|serán|sera|seront|va\s+être|doit|devra"
)
_CANNOT = (
    r"not|never|cannot|unable|impossible|fail(?:s|ed|ing)?\s+to|"
    r"(?:could|can|did|do|does|was|were|is|are|wo|would|should|has|have|had)n'?t|cant|"
    r"nicht|kein|keine|konnte|"
    r"no\s+(?:se|fue|pude|pudo|pudimos|ha|han|he|hemos|está|funcionó|funciona|sirvió|ayudó)|"
    r"ne|n'\w*|pas|jamais"
)
_TRIED = r"tried|try|trying|tries|attempt(?:s|ed|ing)?|versucht|intenté|intentó|essayé|tenté"
_BEFORE_VERB = re.compile(rf"\b(?:(?P<tried>{_TRIED})|{_NOT_YET}|{_CANNOT})\b", re.IGNORECASE)
# Anywhere in a clause: a time to come, or still open ("Reinstall Teams tomorrow", "TBD").
# "Pending" only as a state ("Reinstall pending", "Pending: vendor"), not "cleared pending jobs".
_OPEN = re.compile(
    r"\b(?:tomorrow|tonight|next\s+(?:week|month|time|visit|monday|tuesday|wednesday|thursday|"
    r"friday|saturday|sunday)|later\s+(?:today|this\s+week)|tbd|tbc|todo|to-do|"
    r"in\s+progress|on\s+hold|not\s+yet|yet\s+to|no\s+luck|without\s+success|unsuccessful\w*|"
    r"morgen|nächste\s+woche|ausstehend|mañana|próxima\s+semana|pendiente|demain|"
    r"semaine\s+prochaine|en\s+attente|à\s+faire)\b"
    r"|^\s*pending\b|\bpending\s*$|\bpending\s+(?:on|from|with|until|vendor|user|approval|"
    r"confirmation|reply|response|parts?|delivery|reboot|restart)\b"
    r"|^\s*scheduled\b(?!\s+tasks?\b)|\bscheduled\s+(?:for\b|$)",
    re.IGNORECASE,
)
# It was done and did not work: this clause and every one before it are not the fix.
_FAILED = re.compile(
    r"\b(?:(?:did|does|has|have|had)(?:\s+not|n'?t)\s+(?:help|work|fix|solve|resolve|change)\w*|"
    r"no\s+(?:luck|change|joy|dice|improvement|difference|go)|made\s+no\s+difference|"
    r"to\s+no\s+avail|without\s+success|unsuccessful\w*|not\s+(?:fixed|resolved|solved)|"
    r"still\s+(?:not|broken|fail\w*|crash\w*|the\s+same|same|happen\w*|occur\w*|persist\w*|"
    r"there|down|offline|stuck|freez\w*|hang\w*|loop\w*|error\w*|drop\w*|disconnect\w*|"
    r"prompt\w*|ask\w*|lock\w*|won't|doesn't|can't|cannot)|"
    r"same\s+(?:issue|error|problem|result|behaviou?r)|(?:issue|problem|error)\s+(?:persist\w*|"
    r"remain\w*)|"
    r"(?:hat|hatte)\s+nicht\s+geholfen|half\s+nicht|ohne\s+erfolg|keine\s+besserung|"
    r"no\s+(?:funcionó|ayudó|sirvió|resolvió)|sin\s+éxito|"
    r"n'a\s+pas\s+(?:aidé|fonctionné|marché|résolu)|sans\s+succès)\b"
    r"|^\s*(?:it\s+|that\s+|this\s+)?(?:also\s+|still\s+)?failed\b(?!\s+(?:over|back)\b)"
    r"|\bfailed(?:\s+(?:again|too|with\b.*))?\s*$"
    r"|^\s*(?:it\s+|(?:it|that|this)\s+(?:is|was)\s+)?(?:still\s+)?not\s+working\b",
    re.IGNORECASE,
)
# A failure after these words is the reason for what came before, not its outcome.
_REASONS = frozenset("because since after until weil porque car".split())
# "Tried clearing the cache and it worked": a trial followed by its success.
_WORKED = frozenset("worked works working fixed resolved solved helped trick".split())
_SUCCESS_WORDS = FILLER_WORDS | _WORKED | frozenset("that which did".split())
# A heading that makes the rest of its sentence a plan ("Plan: swap the dock").
_HEADING_WORDS = frozenset(
    "plan plans planned next step steps todo to do tbd pending action actions items follow up "
    "followup open remaining recommendation proposed".split()
)
_HEADINGS = frozenset(
    "plan plans planned next steps todo do tbd pending action actions followup".split()
)
_CONDITIONS = frozenset("if unless wenn falls si".split())
# The words a clause may start with before its verb ("…, then also reinstall Teams").
_LEAD_IN = frozenset("to also then and or maybe possibly probably perhaps just please pls".split())
_CLAUSE_WORD = re.compile(r"[^\W\d_][\w'-]*")
# Verbs read as done as well as not ("reset"), and plain forms that only read as not done.
_EITHER = frozenset("reset set put shut rerun".split())
_PLAIN = (frozenset(_ACTION_BASES) | {"reboot", "restart", "power", "bounce"}) - _EITHER


def _clause_words(clause: str) -> list[tuple[int, str]]:
    return [
        (m.start(), m.group().lower().replace("-", "").strip("'"))
        for m in _CLAUSE_WORD.finditer(clause)
    ]


def _done_form(word: str) -> bool:
    """True for a form of an action verb that only reads as done ("reinstalled", "rebuilt")."""
    return word in ACTION_WORDS and word not in _PLAIN | _EITHER and not word.endswith("ing")


def _clauses_done(note: str) -> list[tuple[str, bool]]:
    """The note's clauses, each with whether it says something was done (see above)."""
    note = note.replace("\u2019", "'")
    masked = _QUOTED.sub(lambda m: " " * len(m.group()), note)
    # Each clause: where it starts and ends, whether a sentence ended before it, and the word
    # that joined it to the one before ("but", "because"…).
    spans: list[tuple[int, int, bool, str]] = []
    start, hard, joined = 0, True, ""
    for found in _CLAUSE_BREAK.finditer(masked):
        spans.append((start, found.start(), hard, joined))
        start, hard, joined = found.end(), bool(found.group("hard")), found.group().lower()
    spans.append((start, len(masked), hard, joined))

    clauses: list[tuple[str, bool]] = []
    tried: list[bool] = []  # not done only because it was a trial
    carried: tuple[str, bool] | None = None  # what a following clause may carry on: how, tried
    for begin, end, sentence, joined in spans:
        text, seen = note[begin:end], masked[begin:end]
        if sentence:
            carried = None
        said = _clause_words(seen)
        if not said:
            continue
        lead = next((w for _, w in said if w not in _LEAD_IN), "")
        done, trial = True, False
        if carried and (
            (carried[0] == "verb" and lead in _PLAIN)
            or (carried[0] == "heading" and not _done_form(lead))
        ):
            done, trial = False, carried[1]
        else:
            carried = None
        actions = [at for at, w in said if w in ACTION_WORDS]
        markers = list(_BEFORE_VERB.finditer(seen))
        governed = _governed(said, markers)
        if markers and all(at in governed for at in actions):
            tries = governed.values() if governed else [bool(m.group("tried")) for m in markers]
            done, trial = False, all(tries) and (done or trial)
            if governed:
                carried = ("verb", trial)
        if _OPEN.search(seen):
            done, trial = False, False
        if said[0][1] in _CONDITIONS or (
            made_only_of(seen, _HEADING_WORDS) and {w for _, w in said} & _HEADINGS
        ):
            done, carried = False, ("heading", False)
        failed = _FAILED.search(seen)
        if failed and not _describes(seen[: failed.start()]):
            # It says what failed ("Reboot didn't help", "tried the old one without success"),
            # or gives the reason for what came before ("…because the repair did not help"):
            # only when it stands alone ("…, didn't help") does it say that of what came before.
            own = (actions and actions[0] < failed.start()) or any(
                m.group("tried") and m.start() < failed.start() for m in markers
            )
            if not own and joined not in _REASONS:
                clauses = [(earlier, False) for earlier, _ in clauses]
                tried = [False] * len(tried)
            done = trial = False
            carried = None
        elif done and made_only_of(seen, _SUCCESS_WORDS) and {w for _, w in said} & _WORKED:
            # "…and it worked": the trials just before it are what worked.
            for i in range(len(clauses) - 1, -1, -1):
                if not tried[i]:
                    break
                clauses[i], tried[i] = (clauses[i][0], True), False
        clauses.append((text, done))
        tried.append(trial)
    return clauses


def _governed(said: list[tuple[int, str]], markers: list[re.Match[str]]) -> dict[int, bool]:
    """The actions a word of intent, inability or trial comes before, by position, each with
    whether only trials do. Each governs the first action after it ("could not be cleared")
    and those that go on it: a plain verb or one after "or" ("could not clear or restart",
    "could not be remapped or reconnected"); not a later one that reads as done ("the cache
    could not be cleared I reinstalled Teams")."""
    governed: dict[int, bool] = {}
    for marker in markers:
        first, previous = True, ""
        for at, word in said:
            if at >= marker.end() and word in ACTION_WORDS:
                if first or word in _PLAIN or previous in ("or", "nor"):
                    governed[at] = governed.get(at, True) and bool(marker.group("tried"))
                first = False
            previous = word
    return governed


def _describes(before: str) -> bool:
    """True when a failure is said of a thing, not of the fix: a relative clause after a noun
    ("Replaced the fuser which didn't work"), not "…, which didn't help"."""
    said = [w for _, w in _clause_words(before)]
    return any(w in ("that", "which", "who") for w in said[1:])


def _nothing_done(text: str, ticket_prefix: str, references: Sequence[str]) -> bool:
    """True when the note says what will be, could not be or was tried to be done, and no clause
    of it says what was done (see above)."""
    clauses = _clauses_done(text)
    if all(done for _, done in clauses):
        return False
    said = _without_tickets(
        " ; ".join(clause for clause, done in clauses if done), ticket_prefix, references
    )
    actions = action_words(said)
    if set(actions) - _WEAK_ACTIONS or _runs_command(said):
        return False
    if (_KB_ID.search(said) and set(words(said)) & _KB_FOLLOWED) or _LINK_FOLLOWED.search(said):
        return False
    signals = object_signals(said, ticket_prefix=ticket_prefix, references=references)
    return not (actions and signals and not (signals == ["system"] and _only_os(said)))
