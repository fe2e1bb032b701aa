"""Where things are: parse what a user gives into a location, and map a source to its reference.

Accepted forms of a source or target:

- ``abfs://container/path``, ``abfss://…``, ``az://container/path`` (also ``container@account.dfs.core.windows.net``)
- ``https://<account>.blob.core.windows.net/container/path`` (or ``.dfs.``), and the same under any
  other endpoint the account is configured with: sovereign clouds (``…blob.core.chinacloudapi.cn``),
  DNS-zone endpoints (``<account>.z12.blob.storage.azure.net``), private endpoints, custom domains
- Azurite's path-style ``http://127.0.0.1:10000/devstoreaccount1/container/path`` (loopback hosts only)
- ``container/path``
- a local path or a ``file://`` URL

A URL that names an endpoint (``https://…`` or path-style ``http://…``) records it on the
:class:`BlobLocation`; ``Storage.check_account`` accepts it only when it is the configured one
(compared as scheme, host and port, not by the host's shape).
A malformed host or port (unbalanced ``[``, fullwidth ``／``/``：``, a port that is not a number
in 1-65535) is an :class:`InvalidRequest`, never an unexpected error.

Only a blob name's final suffix ever changes when mapping (never a substring elsewhere),
and names that could escape their container or upset a reader are refused.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from shared.errors import InvalidRequest, SourceNotAllowed

NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".h5", ".hdf5", ".he5")
REFERENCE_SUFFIXES = {"json": ".json", "parquet": ".parquet"}
ERRORS_PREFIX = "_errors"
# Names in the refs container whose first segment starts with this belong to ncrefs itself
# (error records now; datasets and the catalog later): never a reference target.
RESERVED_MARK = "_"

_CONTAINER_RE = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*$")
_ACCOUNT_RE = re.compile(r"^[a-z0-9]{3,24}$")
# <account>[.z<NN>|.privatelink].blob|dfs.<suffix>: the blob/dfs host of an account in any Azure cloud.
_AZURE_HOST_RE = re.compile(
    r"^(?P<account>[a-z0-9]{3,24})\.(?P<zone>(?:z\d{1,2}|privatelink)\.)?(?:blob|dfs)\.(?P<suffix>(?:[a-z0-9-]+\.)*[a-z0-9-]+)$")
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
# host or [IPv6 literal], then optionally ':' and a port; userinfo is refused before this applies.
_NETLOC_RE = re.compile(r"^(?P<host>\[[^\[\]]*\]|[^\[\]:]*)(?::(?P<port>.*))?$", re.DOTALL)
_DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_BLOB_NAME = 1024
MAX_SEGMENTS = 254


@dataclass(frozen=True)
class BlobLocation:
    container: str
    path: str
    account: str | None = None  # given only when the user's URL named one
    # ``scheme://host:port[/account]`` when the user's URL named an endpoint (see blob_endpoint);
    # not part of equality, so a location compares (and prints) as before.
    endpoint: str | None = field(default=None, compare=False)

    def url(self, scheme: str = "abfs", endpoint: str | None = None) -> str:
        """The URL written into references and results (``abfs://container/path`` by default).

        ``https`` URLs are built under ``endpoint``, the configured blob service URL
        (``https://<account>.blob.core.windows.net``, a sovereign or DNS-zone endpoint, Azurite's).
        """
        if scheme == "https":
            if not endpoint:
                raise ValueError("https URLs need the blob endpoint they live under")
            return f"{endpoint.split('?', 1)[0].rstrip('/')}/{self.container}/{self.path}"
        return f"{scheme}://{self.container}/{self.path}"

    def __str__(self) -> str:
        return f"{self.container}/{self.path}"


@dataclass(frozen=True)
class LocalLocation:
    path: Path

    def url(self, scheme: str = "file", endpoint: str | None = None) -> str:
        return self.path.as_uri()

    def __str__(self) -> str:
        return str(self.path)


Location = BlobLocation | LocalLocation


def parse_location(text: str, *, what: str = "source", allow_local: bool = True) -> Location:
    """Parse a user-given source or target; raise InvalidRequest saying what is wrong.

    With ``allow_local=False`` (the HTTP API) local paths and ``file://`` URLs are refused and
    the local file system is never looked at.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest(f"The {what} is empty.", hint="Give a blob URL such as abfs://raw-netcdf/a/b.nc, container/path, or a local file.")
    _refuse_control_characters(text, what)
    if "\\" in text:
        raise InvalidRequest(f"The {what} {text!r} contains a backslash.", hint="Use forward slashes between path segments.")

    try:
        parts = urlsplit(text)
    except ValueError as error:  # unbalanced '[' or ']', or a host with a fullwidth '／', '：', '？', '＠'…
        raise InvalidRequest(f"The {what} {text!r} is not a well-formed URL: {error}.",
                             hint="Check the host part: plain ASCII '/', ':' and balanced [ ] for IPv6.") from None
    scheme = parts.scheme.lower()
    if len(scheme) == 1:  # a Windows drive letter, not a scheme
        scheme = ""
    if scheme in ("abfs", "abfss", "az"):
        if parts.query or parts.fragment:
            raise InvalidRequest(f"The {what} {text!r} has a '?' or '#', which blob URLs here may not contain.")
        container, _, host = parts.netloc.partition("@")
        account = None
        if host:
            match = _AZURE_HOST_RE.match(host.lower())
            if not match:
                raise SourceNotAllowed(f"The {what} {text!r} names host {host!r}, which is not an Azure storage account.")
            account = match["account"]
        return _blob(container, parts.path.lstrip("/"), account, text, what)
    if scheme in ("http", "https"):
        return _parse_http(text, parts, what)
    if scheme == "file" or (not scheme and not allow_local and text.startswith(("/", "~", "."))):
        if not allow_local:
            raise SourceNotAllowed(f"The {what} {text!r} is a local file; only blobs are accepted here.")
        if parts.netloc not in ("", "localhost"):
            raise InvalidRequest(f"The {what} {text!r} is a file URL on another host.", hint="Use file:///absolute/path.")
        return _local(unquote(parts.path), text, what)
    if scheme:
        raise InvalidRequest(
            f"The {what} {text!r} uses the unsupported scheme {scheme!r}.",
            hint="Use abfs://, az://, https://<account>.blob.core.windows.net/, container/path or a local path.",
        )
    # No scheme: an existing local file wins; a bare name (no "/", so no container) is a local
    # file too; otherwise "container/path".
    if allow_local and (text.startswith(("/", "./", "../", "~")) or "/" not in text or Path(text).expanduser().exists()):
        return _local(text, text, what)
    container, _, path = text.partition("/")
    return _blob(container, path, None, text, what)


def _parse_http(text: str, parts, what: str) -> BlobLocation:
    if parts.username or parts.password or "@" in parts.netloc:
        raise SourceNotAllowed(f"The {what} {text!r} carries user information, which is never accepted.")
    scheme = parts.scheme.lower()
    host, port = _host_and_port(text, parts, what)
    segments = parts.path.lstrip("/")
    if host in _LOOPBACK_HOSTS:
        # Azurite path-style: http://127.0.0.1:10000/<account>/<container>/<path>
        account, _, segments = segments.partition("/")
        if not _ACCOUNT_RE.match(account):
            raise InvalidRequest(f"The {what} {text!r} has no valid account name after the emulator host.")
        endpoint = _endpoint(scheme, host, port, account)
    else:
        # Any other host is an account endpoint (Azure's in any cloud, a DNS zone, a private or
        # custom domain): Storage.check_account accepts it only if it is the configured one.
        match = _AZURE_HOST_RE.match(host)
        account = match["account"] if match else None
        endpoint = _endpoint(scheme, host, port)
    if parts.query or parts.fragment:
        raise InvalidRequest(
            f"The {what} {text!r} has a query or fragment (a SAS token?).",
            hint="Give the plain blob URL; access uses the app's own credentials.",
        )
    container, _, path = segments.partition("/")
    return _blob(unquote(container), unquote(path), account, text, what, endpoint)


def _host_and_port(text: str, parts, what: str) -> tuple[str, int | None]:
    """The URL's lowercased host (without IPv6 brackets) and port; InvalidRequest if either is malformed."""
    shape = _NETLOC_RE.match(parts.netloc)
    if not shape:
        raise InvalidRequest(f"The {what} {text!r} has a malformed host {parts.netloc!r}.",
                             hint="Give host or host:port (an IPv6 address in [ ]), e.g. http://127.0.0.1:10000/devstoreaccount1/….")
    if not shape["host"].strip("[]"):
        raise InvalidRequest(f"The {what} {text!r} has no host.", hint="Give the storage account's host name.")
    port_text = shape["port"]
    if port_text is not None and not (port_text.isascii() and port_text.isdigit() and 1 <= int(port_text) <= 65535):
        raise InvalidRequest(f"The {what} {text!r} has the port {port_text!r}, which is not a number from 1 to 65535.",
                             hint="Give the port as plain digits, e.g. :10000, or leave it out.")
    try:
        return (parts.hostname or "").lower(), parts.port
    except ValueError as error:  # the checks above should leave nothing for urllib to refuse
        raise InvalidRequest(f"The {what} {text!r} has a malformed host or port: {error}.") from None


def _endpoint(scheme: str, host: str, port: int | None, account: str | None = None) -> str:
    """``scheme://host:port`` (default port filled in, ``.dfs.`` read as ``.blob.``), plus ``/account`` for path-style."""
    host = host.lower()
    match = _AZURE_HOST_RE.match(host)
    if match:  # an account's .dfs. host is its .blob. host
        host = f"{match['account']}.{match['zone'] or ''}blob.{match['suffix']}"
    if ":" in host:
        host = f"[{host}]"
    port = port if port is not None else _DEFAULT_PORTS.get(scheme)
    return f"{scheme}://{host}:{port}" + (f"/{account}" if account else "")


def account_of_host(host: str) -> str | None:
    """The account an Azure blob/dfs host names, in any cloud or DNS zone (``acct.z12.blob.storage.azure.net``)."""
    match = _AZURE_HOST_RE.match(host.lower())
    return match["account"] if match else None


def blob_endpoint(url: str) -> str:
    """A blob service URL's endpoint, normalized as :class:`BlobLocation` records it.

    ``http://127.0.0.1:10000/devstoreaccount1/`` -> ``http://127.0.0.1:10000/devstoreaccount1``;
    ``https://acct.blob.core.windows.net/`` -> ``https://acct.blob.core.windows.net:443``.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    account = parts.path.strip("/").partition("/")[0] or None
    return _endpoint(scheme, parts.hostname or "", parts.port, account)


def _blob(container: str, path: str, account: str | None, text: str, what: str, endpoint: str | None = None) -> BlobLocation:
    if not _CONTAINER_RE.match(container):
        raise InvalidRequest(
            f"The {what} {text!r} has no valid container name ({container!r}).",
            hint="Container names are 3-63 lowercase letters, digits and single hyphens, e.g. raw-netcdf.",
        )
    validate_blob_name(path, what=what, text=text)
    return BlobLocation(container, path, account, endpoint)


def validate_blob_name(path: str, *, what: str = "source", text: str | None = None) -> None:
    text = text if text is not None else path
    if not path or path.endswith("/"):
        raise InvalidRequest(f"The {what} {text!r} names a container or folder, not a file.", hint="Give the full path of one file.")
    _refuse_control_characters(path, what)
    if len(path) > MAX_BLOB_NAME:
        raise InvalidRequest(f"The {what}'s blob name is {len(path)} characters; Azure allows at most {MAX_BLOB_NAME}.")
    segments = path.split("/")
    if len(segments) > MAX_SEGMENTS:
        raise InvalidRequest(f"The {what}'s blob name has {len(segments)} path segments; Azure allows at most {MAX_SEGMENTS}.")
    for segment in segments:
        decoded = unquote(segment)
        if segment == "" or decoded.strip() == "":
            raise InvalidRequest(f"The {what} {text!r} has an empty path segment.", hint="Remove doubled slashes.")
        if decoded in (".", "..") or segment in (".", ".."):
            raise InvalidRequest(f"The {what} {text!r} has a '.' or '..' segment.", hint="Give the blob's plain path, without relative segments.")
        if "/" in decoded or "\\" in decoded:
            # A reader that decodes the name would see other segments (e.g. ..%2f..%2f).
            raise InvalidRequest(f"The {what} {text!r} has an encoded slash in a path segment.", hint="Give the blob's plain path.")
        if "#" in segment or "?" in segment:
            raise InvalidRequest(
                f"The {what} {text!r} contains '#' or '?', which readers of reference URLs cannot handle.",
                hint="Rename the blob without '#' or '?'.",
            )


def _refuse_control_characters(text: str, what: str) -> None:
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text):
        raise InvalidRequest(f"The {what} contains control characters.", hint="Remove them; blob names are printable text.")


def _local(path_text: str, text: str, what: str) -> LocalLocation:
    path = Path(path_text).expanduser()
    if any(part == ".." for part in PurePosixPath(path_text).parts):
        raise InvalidRequest(f"The {what} {text!r} has a '..' segment.", hint="Give the file's absolute path.")
    return LocalLocation(path.resolve())


def is_netcdf_name(name: str) -> bool:
    return name.lower().endswith(NETCDF_SUFFIXES)


def reference_name(name: str, fmt: str) -> str:
    """``a/b/file.nc`` -> ``a/b/file.json``: only a known final suffix is replaced; other names get one appended."""
    suffix = REFERENCE_SUFFIXES[fmt]
    lowered = name.lower()
    for known in NETCDF_SUFFIXES:
        if lowered.endswith(known):
            return name[: -len(known)] + suffix
    return name + suffix


def reference_location(source: Location, *, fmt: str, refs_container: str, source_container: str) -> Location:
    """Where a source's reference goes by default.

    ``raw-netcdf/a/b/file.nc`` -> ``refs/a/b/file.json``. A source in any other container keeps
    its container name as the first segment (``archive/x.nc`` -> ``refs/archive/x.json``), so two
    containers never map to the same reference. A local file's reference lies beside it.
    """
    if isinstance(source, LocalLocation):
        return LocalLocation(source.path.with_name(reference_name(source.path.name, fmt)))
    relative = source.path if source.container == source_container else f"{source.container}/{source.path}"
    target = BlobLocation(refs_container, reference_name(relative, fmt), source.account)
    validate_blob_name(target.path, what="reference target")
    if is_reserved(target, refs_container):
        raise InvalidRequest(
            f"The source {source} would map to {target}, but names starting with {RESERVED_MARK!r} at the top of "
            f"the {refs_container} container are reserved for ncrefs's own records.",
            hint="Move or rename the file (its first folder must not start with '_'), or give an explicit output.",
        )
    return target


def is_reserved(location: Location, refs_container: str) -> bool:
    """Whether a location lies in the refs container's reserved namespace (``_errors/``, ...)."""
    return (isinstance(location, BlobLocation) and location.container == refs_container
            and location.path.startswith(RESERVED_MARK))


def error_record_location(source: BlobLocation, *, refs_container: str, source_container: str) -> BlobLocation:
    """``refs/_errors/<relative source path>.json``: where a permanent failure is recorded."""
    relative = source.path if source.container == source_container else f"{source.container}/{source.path}"
    return BlobLocation(refs_container, f"{ERRORS_PREFIX}/{relative}.json", source.account)


def format_for_target(target: Location) -> str | None:
    """The reference format a target's name asks for, if it says."""
    name = target.path.name if isinstance(target, LocalLocation) else target.path
    for fmt, suffix in REFERENCE_SUFFIXES.items():
        if name.lower().endswith(suffix):
            return fmt
    return None
