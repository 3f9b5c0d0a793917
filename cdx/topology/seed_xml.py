"""Read RetailCdxSeedData XML (CDX seed data and its extensions) into plain records.

Accepted layout (containers optional; element and attribute names match case-insensitively)::

    <RetailCdxSeedData Name="AX7" ChannelDBSchema="ext" ChannelDBMajorVersion="7">
      <Jobs><Job Id="1040" Description="Products" DescriptionLabelId="..." IsUpload="false"/></Jobs>
      <Subjobs>
        <Subjob Id="InventTable" AxTableName="INVENTTABLE" TargetTableName="INVENTTABLE"
                TargetTableSchema="ax" IsUpload="false" ReplicationCounterFieldName="..."
                OverrideTarget="false" Description="...">
          <ScheduledByJobs><ScheduledByJob>1040</ScheduledByJob></ScheduledByJobs>
          <AxFields><Field Name="ITEMID" ToName="ITEMID"/></AxFields>
        </Subjob>
      </Subjobs>
    </RetailCdxSeedData>

Malformed XML raises :class:`~cdx.topology.issues.SeedError` with the line; unknown
elements and attributes become warnings. DTDs and entity declarations are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

from cdx.topology.issues import Issue, SeedError


@dataclass
class Element:
    """An XML element with the line it starts on."""

    tag: str
    attrs: dict[str, str]
    line: int
    children: list[Element] = field(default_factory=list)
    text: str = ""


@dataclass(frozen=True)
class Origin:
    """Where something was declared: ``file:line``."""

    file: str
    line: int | None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else self.file


@dataclass
class SeedField:
    name: str
    to_name: str | None
    origin: Origin


@dataclass
class SeedJob:
    id: str
    description: str | None
    is_upload: bool | None
    origin: Origin


@dataclass
class SeedSubjob:
    """A ``<Subjob>`` as written: ``None`` means the attribute (or ScheduledByJobs) was absent."""

    id: str
    origin: Origin
    ax_table: str | None = None
    target_table: str | None = None
    target_schema: str | None = None
    is_upload: bool | None = None
    replication_counter: str | None = None
    override_target: bool | None = None
    description: str | None = None
    scheduled_by: list[tuple[str, Origin]] | None = None
    fields: list[SeedField] = field(default_factory=list)


@dataclass
class SeedFile:
    """One parsed seed file; ``warnings`` lists what was ignored."""

    path: str
    name: str | None = None
    channel_db_schema: str | None = None
    major_version: str | None = None
    """``ChannelDBMajorVersion``: the channel database version the file's seed data is for."""
    line: int | None = None
    """Line of the root element."""
    jobs: list[SeedJob] = field(default_factory=list)
    subjobs: list[SeedSubjob] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)


_ATTRS = {
    "retailcdxseeddata": {"name", "channeldbschema", "channeldbmajorversion"},
    "job": {"id", "description", "descriptionlabelid", "isupload"},
    "subjob": {"id", "axtablename", "targettablename", "targettableschema", "isupload",
               "replicationcounterfieldname", "overridetarget", "description", "descriptionlabelid"},
    "field": {"name", "toname"},
}


def parse_xml(text: str | bytes, file: str) -> Element:
    """Parse XML into :class:`Element` s; raise :class:`SeedError` (with the line) if malformed."""
    parser = expat.ParserCreate()
    root: list[Element] = []
    stack: list[Element] = []

    def start(tag: str, attrs: dict[str, str]) -> None:
        el = Element(tag.rsplit(":", 1)[-1], attrs, parser.CurrentLineNumber)
        (stack[-1].children if stack else root).append(el)
        stack.append(el)

    def end(tag: str) -> None:
        stack.pop()

    def chars(data: str) -> None:
        if stack:
            stack[-1].text += data

    def refuse(*_: object) -> None:
        raise SeedError([Issue("", parser.CurrentLineNumber, "DTDs and entity declarations are not allowed", file)])

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    try:
        parser.Parse(text, True)
    except expat.ExpatError as exc:
        raise SeedError(
            [Issue("", exc.lineno, f"malformed XML: {expat.errors.messages.get(exc.code, str(exc))} "
                                   f"(column {exc.offset + 1})", file)]
        ) from None
    return root[0]


def read_seed_file(path: str | Path) -> SeedFile:
    """Read and parse one seed XML file."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise SeedError([Issue("", None, f"cannot read seed file: {exc.strerror or exc}", str(p))]) from None
    return parse_seed(data, str(p))


def parse_seed(text: str | bytes, file: str) -> SeedFile:
    """Parse seed XML text; structural problems raise :class:`SeedError` listing them all."""
    root = parse_xml(text, file)
    seed = SeedFile(file)
    errors: list[Issue] = []
    if root.tag.lower() != "retailcdxseeddata":
        raise SeedError([Issue("", root.line, f"the root element is <{root.tag}>, expected <RetailCdxSeedData>",
                               file)])
    attrs = _attrs(root, seed, errors)
    seed.name = attrs.get("name")
    seed.channel_db_schema = attrs.get("channeldbschema")
    seed.major_version = attrs.get("channeldbmajorversion") or None
    seed.line = root.line
    for el in _flatten(root, {"jobs", "subjobs"}, seed):
        kind = el.tag.lower()
        if kind == "job":
            job = _job(el, seed, errors)
            if job:
                seed.jobs.append(job)
        elif kind == "subjob":
            sub = _subjob(el, seed, errors)
            if sub:
                seed.subjobs.append(sub)
        else:
            _warn(seed, el, f"unknown element <{el.tag}> ignored")
    if errors:
        raise SeedError(errors)
    return seed


def _warn(seed: SeedFile, el: Element, message: str) -> None:
    seed.warnings.append(Issue("", el.line, message, seed.path))


def _flatten(el: Element, containers: set[str], seed: SeedFile) -> list[Element]:
    """Children of ``el``, looking through container elements (``<Jobs>``, ``<AxFields>``...)."""
    out: list[Element] = []
    for child in el.children:
        if child.tag.lower() in containers:
            if child.attrs:
                _warn(seed, child, f"attributes of <{child.tag}> ignored")
            out.extend(_flatten(child, containers, seed))
        else:
            out.append(child)
    return out


def _attrs(el: Element, seed: SeedFile, errors: list[Issue]) -> dict[str, str]:
    known = _ATTRS[el.tag.lower()]
    out: dict[str, str] = {}
    for name, value in el.attrs.items():
        key = name.lower()
        if key not in known:
            _warn(seed, el, f"unknown attribute {name!r} on <{el.tag}> ignored")
        elif key in out:
            errors.append(Issue("", el.line, f"attribute {name!r} given twice on <{el.tag}>", seed.path))
        else:
            out[key] = value.strip()
    return out


def _bool(value: str | None, what: str, el: Element, seed: SeedFile, errors: list[Issue]) -> bool | None:
    if value is None:
        return None
    low = value.lower()
    if low in ("true", "1"):
        return True
    if low in ("false", "0"):
        return False
    errors.append(Issue("", el.line, f"{what}={value!r} is not a boolean: use \"true\" or \"false\"", seed.path))
    return None


def _job(el: Element, seed: SeedFile, errors: list[Issue]) -> SeedJob | None:
    attrs = _attrs(el, seed, errors)
    if not attrs.get("id"):
        errors.append(Issue("", el.line, "<Job> needs an Id attribute", seed.path))
        return None
    is_upload = _bool(attrs.get("isupload"), "IsUpload", el, seed, errors)
    return SeedJob(attrs["id"], attrs.get("description") or None, is_upload, Origin(seed.path, el.line))


def _subjob(el: Element, seed: SeedFile, errors: list[Issue]) -> SeedSubjob | None:
    attrs = _attrs(el, seed, errors)
    if not attrs.get("id"):
        errors.append(Issue("", el.line, "<Subjob> needs an Id attribute", seed.path))
        return None
    sub = SeedSubjob(
        id=attrs["id"], origin=Origin(seed.path, el.line),
        ax_table=attrs.get("axtablename") or None,
        target_table=attrs.get("targettablename") or None,
        target_schema=attrs.get("targettableschema") or None,
        is_upload=_bool(attrs.get("isupload"), "IsUpload", el, seed, errors),
        replication_counter=attrs.get("replicationcounterfieldname") or None,
        override_target=_bool(attrs.get("overridetarget"), "OverrideTarget", el, seed, errors),
        description=attrs.get("description") or None,
    )
    for child in el.children:
        kind = child.tag.lower()
        items = child.children if kind in ("axfields", "scheduledbyjobs") else [child]  # a container, or one
        if kind in ("axfields", "field"):
            for f in items:
                _field(f, sub, seed, errors)
        elif kind in ("scheduledbyjobs", "scheduledbyjob"):
            sub.scheduled_by = sub.scheduled_by or []
            for job in items:
                _scheduled_by(job, sub, seed, errors)
        else:
            _warn(seed, child, f"unknown element <{child.tag}> in <Subjob> ignored")
    return sub


def _field(el: Element, sub: SeedSubjob, seed: SeedFile, errors: list[Issue]) -> None:
    if el.tag.lower() != "field":
        _warn(seed, el, f"unknown element <{el.tag}> in <AxFields> ignored")
        return
    attrs = _attrs(el, seed, errors)
    if not attrs.get("name"):
        errors.append(Issue("", el.line, "<Field> needs a Name attribute", seed.path))
        return
    sub.fields.append(SeedField(attrs["name"], attrs.get("toname") or None, Origin(seed.path, el.line)))


def _scheduled_by(el: Element, sub: SeedSubjob, seed: SeedFile, errors: list[Issue]) -> None:
    if el.tag.lower() != "scheduledbyjob":
        _warn(seed, el, f"unknown element <{el.tag}> in <ScheduledByJobs> ignored")
    elif not el.text.strip():
        errors.append(Issue("", el.line, "<ScheduledByJob> is empty: write the job id inside it", seed.path))
    elif sub.scheduled_by is not None:
        sub.scheduled_by.append((el.text.strip(), Origin(seed.path, el.line)))
