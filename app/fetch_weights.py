"""``gsv-fetch-weights``: download upstream's pretrained models into the weights root, in its layout.

Files come from the Hugging Face hub through ``huggingface_hub`` (its cache, resumable downloads and
progress bars; ``HF_ENDPOINT``, ``HF_TOKEN`` and ``HF_HOME`` apply), upstream's dictionaries from its
git repository at a pinned commit (see ``app.weights_manifest``).

A fetch runs in two phases so the weights root never holds a half-written or unverified file:

1. download everything missing into the cache (dictionaries into memory) and verify it: the md5 of
   the first 8 KiB for the official SoVITS files (upstream's identities), the size the hub announced
   (``huggingface_hub`` checks it), JSON that parses, git blob ids and sizes, zip CRCs. A failure
   removes the bad copy from the cache and stops before anything is placed;
2. place each file under the weights root: hard-linked from the cache (copied across file systems)
   under a temporary name, then linked to its final name, which fails rather than replace a file.

A file that already exists under the weights root is never downloaded or touched.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from app.engine.registry import MODEL_VERSIONS
from app.weights_manifest import (
    DEFAULT_VERSIONS,
    G2PW_ONNX_NAMES,
    G2PW_REQUIRED,
    RAW_BASE_ENV,
    UPSTREAM_COMMIT,
    UPSTREAM_RAW_BASE,
    GitFile,
    HubFile,
    Plan,
    plan_for,
)

log = logging.getLogger(__name__)

RAW_TIMEOUT_S = 60


class FetchError(RuntimeError):
    """A download failed or a file is not what upstream publishes; nothing of this run was placed."""


@dataclass
class FetchReport:
    placed: list[str] = field(default_factory=list)  # paths under the weights root
    kept: list[str] = field(default_factory=list)  # existed already: left as they were


def hub_endpoint(endpoint: str | None = None) -> str:
    """The hub address used: ``endpoint``, else ``HF_ENDPOINT`` (read now), else huggingface.co."""
    from huggingface_hub import constants

    return (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def raw_base(base: str | None = None) -> str:
    return (base or os.environ.get(RAW_BASE_ENV) or UPSTREAM_RAW_BASE).rstrip("/")


def hub_reachable(endpoint: str | None = None, timeout: float = 3.0) -> tuple[bool, str]:
    """Whether the hub answers for upstream's repository within ``timeout`` seconds, and what it said.

    One HEAD request for the smallest file (with HF_TOKEN when set), no retries: huggingface_hub's own
    metadata call backs off and retries for half a minute, too long for a start-up check."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session

    from app.weights_manifest import SHARED

    url = hf_hub_url(SHARED[0].repo_id, SHARED[0].filename, endpoint=hub_endpoint(endpoint))
    try:
        response = get_session().head(url, headers=build_hf_headers(), timeout=timeout, allow_redirects=False)
    except Exception as exc:  # noqa: BLE001 - any failure (DNS, refused, timeout, offline mode) is "no"
        return False, _short_reason(exc)
    if response.status_code >= 400:
        return False, f"{url} answered HTTP {response.status_code}"
    return True, f"{url} answered HTTP {response.status_code}"


def _short_reason(exc: Exception) -> str:
    """The innermost reason of a requests/urllib3 error, e.g. "Failed to resolve 'huggingface.co' (...)"."""
    reason = getattr(exc.args[0], "reason", exc.args[0]) if exc.args else exc
    text = str(reason).split("\n")[0]
    if text.startswith("<") and ">: " in text:  # "<urllib3 connection object at 0x...>: what happened"
        text = text.split(">: ", 1)[1]
    return f"{type(exc).__name__}: {text[:200]}"


def md5_first_8k(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.md5(f.read(8192)).hexdigest()


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


# ------------------------------------------------------------------------------------------ phase 1
def _discard_cached(cached: Path) -> None:
    """Remove a bad download from the hub cache (its blob and snapshot link) so a rerun fetches it anew."""
    blob = cached.resolve()
    cached.unlink(missing_ok=True)
    blob.unlink(missing_ok=True)


def _download_hub(item: HubFile, endpoint: str, revision: str, cache_dir: Path | None) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        cached = hf_hub_download(
            repo_id=item.repo_id,
            filename=item.filename,
            revision=revision,
            cache_dir=cache_dir,
            endpoint=endpoint,
        )
    except (OSError, ValueError) as exc:  # network, HTTP status, size check (all OSError subclasses)
        raise FetchError(f"downloading {item.filename} of {item.repo_id} from {endpoint} failed: {exc}") from exc
    return Path(cached)


def _check_hub_file(item: HubFile, path: Path, md5_8k: dict[str, str]) -> None:
    if path.stat().st_size == 0:
        raise FetchError(f"{item.filename} of {item.repo_id} is empty")
    expected = md5_8k.get(item.local_path)
    if expected is not None and (found := md5_first_8k(path)) != expected:
        raise FetchError(
            f"{item.filename} of {item.repo_id} is not upstream's file: the md5 of its first 8 KiB is {found}, "
            f"upstream's is {expected}"
        )
    if item.is_json:
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise FetchError(f"{item.filename} of {item.repo_id} is not valid JSON: {exc}") from None


def _g2pw_folder_in(archive: zipfile.ZipFile) -> PurePosixPath:
    """The folder of the zip that holds the g2pW model, checked whole (CRCs, the files the service reads)."""
    names = [PurePosixPath(n) for n in archive.namelist()]
    for name in names:
        if name.is_absolute() or ".." in name.parts:
            raise FetchError(f"the g2pW zip holds an unsafe path: {name}")
    onnx = [n for n in names if n.name in G2PW_ONNX_NAMES]
    if not onnx:
        raise FetchError(f"the g2pW zip holds no {' or '.join(G2PW_ONNX_NAMES)}")
    folder = onnx[0].parent
    missing = [n for n in G2PW_REQUIRED if folder / n not in names]
    if missing:
        raise FetchError(f"the g2pW zip lacks {', '.join(missing)} beside its model")
    bad = archive.testzip()
    if bad is not None:
        raise FetchError(f"the g2pW zip is corrupt (CRC mismatch in {bad})")
    return folder


def _download_git(item: GitFile, base: str) -> bytes:
    url = f"{base}/{UPSTREAM_COMMIT}/{item.path}"
    try:
        with urllib.request.urlopen(url, timeout=RAW_TIMEOUT_S) as response:
            data = response.read()
    except (OSError, urllib.error.URLError) as exc:
        raise FetchError(f"downloading {url} failed: {exc}") from exc
    if len(data) != item.size or git_blob_sha1(data) != item.blob_sha1:
        raise FetchError(
            f"{url} is not upstream's file at {UPSTREAM_COMMIT[:10]}: {len(data)} bytes, blob "
            f"{git_blob_sha1(data)} (expected {item.size} bytes, blob {item.blob_sha1})"
        )
    return data


# ------------------------------------------------------------------------------------------ phase 2
def _link_no_replace(staged: Path, dest: Path) -> bool:
    """Give ``staged`` the name ``dest`` unless that exists (checked by the link itself, no race)."""
    try:
        os.link(staged, dest)
    except FileExistsError:
        return False
    return True


def _place_file(source: Path | bytes, dest: Path) -> bool:
    """Put a verified file at ``dest`` unless something is there; True when placed."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".fetching")
    os.close(fd)
    staged = Path(name)
    try:
        if isinstance(source, bytes):
            staged.write_bytes(source)
        else:
            staged.unlink()
            source = source.resolve()  # the cache's snapshot entry is a relative symlink to its blob
            try:
                os.link(source, staged)  # no second copy of GBs when the cache is on the same disk
            except OSError:
                shutil.copyfile(source, staged)
            if staged.stat().st_size != source.stat().st_size:
                raise FetchError(f"copying {source} to {dest} came out short")
        staged.chmod(0o644)
        return _link_no_replace(staged, dest)
    finally:
        staged.unlink(missing_ok=True)


def _place_g2pw(zip_path: Path, folder: PurePosixPath, dest: Path) -> bool:
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".fetching"))
    try:
        with zipfile.ZipFile(zip_path) as archive:
            top = folder == PurePosixPath(".")  # the files at the zip's top level
            members = [m for m in archive.namelist() if top or PurePosixPath(m).is_relative_to(folder)]
            archive.extractall(staging, members=members)
        model = staging / folder
        model.chmod(0o755)
        if dest.exists():
            return False
        model.rename(dest)
        return True
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ------------------------------------------------------------------------------------------ the fetch
def fetch_weights(
    weights_root: Path,
    plan: Plan | None = None,
    *,
    endpoint: str | None = None,
    revision: str = "main",
    cache_dir: Path | None = None,
    raw_base_url: str | None = None,
    say: Callable[[str], None] = log.info,
) -> FetchReport:
    """Fetch what ``plan`` (default: the default versions' models) lists and is missing under
    ``weights_root``. Raises FetchError, having placed nothing, when any file fails."""
    plan = plan or plan_for()
    root = Path(weights_root)
    endpoint = hub_endpoint(endpoint)
    report = FetchReport()

    def missing(local_path: str) -> bool:
        if (root / local_path).exists() or (root / local_path).is_symlink():
            say(f"kept    {local_path} (exists; never overwritten)")
            report.kept.append(local_path)
            return False
        return True

    hub = [f for f in plan.hub if missing(f.local_path)]
    git = [f for f in plan.git if missing(f.path)]
    g2pw = plan.g2pw if plan.g2pw is not None and missing(plan.g2pw.local_path) else None

    # Phase 1: everything downloaded and verified before anything is placed.
    downloaded: list[tuple[str, Path | bytes]] = []
    for item in hub:
        say(f"fetch   {item.repo_id}/{item.filename}")
        cached = _download_hub(item, endpoint, revision, cache_dir)
        try:
            _check_hub_file(item, cached, dict(plan.md5_8k))
        except FetchError:
            _discard_cached(cached)
            raise
        downloaded.append((item.local_path, cached))
    g2pw_source: tuple[Path, PurePosixPath] | None = None
    if g2pw is not None:
        say(f"fetch   {g2pw.repo_id}/{g2pw.filename}")
        cached = _download_hub(g2pw, endpoint, revision, cache_dir)
        try:
            with zipfile.ZipFile(cached) as archive:
                g2pw_source = cached, _g2pw_folder_in(archive)
        except FetchError:
            _discard_cached(cached)
            raise
        except (zipfile.BadZipFile, OSError) as exc:
            _discard_cached(cached)
            raise FetchError(f"the g2pW zip is unreadable: {exc}") from exc
    base = raw_base(raw_base_url)
    for item in git:
        say(f"fetch   {base}/{UPSTREAM_COMMIT[:10]}/{item.path}")
        downloaded.append((item.path, _download_git(item, base)))

    # Phase 2: into place, never over an existing file.
    for local_path, source in downloaded:
        placed = _place_file(source, root / local_path)
        (report.placed if placed else report.kept).append(local_path)
        say(f"{'placed' if placed else 'kept':<8}{local_path}")
    if g2pw is not None and g2pw_source is not None:
        placed = _place_g2pw(*g2pw_source, root / g2pw.local_path)
        (report.placed if placed else report.kept).append(g2pw.local_path)
        say(f"{'placed' if placed else 'kept':<8}{g2pw.local_path}/")
    return report


# ------------------------------------------------------------------------------------------ the command
def _versions(text: str) -> list[str]:
    versions = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in versions if v not in MODEL_VERSIONS]
    if not versions or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown version {', '.join(unknown) or '(none)'}; choose from {','.join(MODEL_VERSIONS)}"
        )
    return versions


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gsv-fetch-weights",
        description="Download upstream GPT-SoVITS's pretrained models into the weights root, in its layout. "
        "Existing files are kept. HF_ENDPOINT, HF_TOKEN and HF_HOME apply.",
    )
    parser.add_argument(
        "--versions",
        type=_versions,
        default=list(DEFAULT_VERSIONS),
        help=f"comma-separated model versions from {','.join(MODEL_VERSIONS)} (default {','.join(DEFAULT_VERSIONS)})",
    )
    parser.add_argument("--weights-root", type=Path, help="weights folder (default: GSV_WEIGHTS_ROOT, else ./weights)")
    parser.add_argument("--g2pw", action="store_true", help="also the g2pW model for Chinese polyphones (~590 MB)")
    parser.add_argument(
        "--english-dicts", action="store_true", help="also upstream's English dictionaries (cmudict*.rep)"
    )
    parser.add_argument("--revision", default="main", help="hub revision (branch, tag or commit; default main)")
    parser.add_argument(
        "--raw-base-url",
        help=f"where upstream's repository files are read ({RAW_BASE_ENV}; default {UPSTREAM_RAW_BASE})",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.weights_root is None:
        from app.settings import Settings

        args.weights_root = Settings().weights_root
    plan = plan_for(args.versions, g2pw=args.g2pw, english_dicts=args.english_dicts)
    print(f"fetching {','.join(args.versions)} into {args.weights_root} from {hub_endpoint()}", flush=True)
    try:
        report = fetch_weights(
            args.weights_root,
            plan,
            revision=args.revision,
            raw_base_url=args.raw_base_url,
            say=lambda line: print(line, flush=True),
        )
    except FetchError as exc:
        print(f"gsv-fetch-weights: error: {exc}\nNothing of this run was placed in {args.weights_root}.", file=sys.stderr)
        return 1
    print(f"done: {len(report.placed)} placed, {len(report.kept)} kept. Start the service: gsv-server")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
