"""WordNet 3.0 for METEOR, found offline: nltk's own corpus, or Debian's `wordnet-base` files.

nltk's `meteor_score` matches synonyms through WordNet. We never call `nltk.download` at run time.
Search order: an explicit folder or `$ICMA_WORDNET_DIR`; nltk's installed `corpora/wordnet`; Debian's
`/usr/share/wordnet` (packages `wordnet-base` + `wordnet-sense-index`). Debian ships the WordNet 3.0
database without the 45-line `lexnames` table that nltk's reader insists on, and nltk (3.10+) only
opens files under its `nltk.data.path` roots, so a Debian folder is copied (about 40 MB, once; nltk
refuses links) with our copy of `lexnames` into `~/.cache/icma_jax/nltk_data/corpora/wordnet`
(`$ICMA_CACHE_DIR` moves it), whose root is added to `nltk.data.path`.
"""

import functools
import os
import pathlib
import shutil
import tempfile
import warnings

import nltk
from nltk.corpus.reader.wordnet import WordNetCorpusReader

DEBIAN_DIR = pathlib.Path("/usr/share/wordnet")
LEXNAMES = pathlib.Path(__file__).resolve().parents[1] / "assets" / "wordnet_lexnames.txt"
# What nltk's reader opens: the database proper, the exception lists, the sense index (read once by
# its constructor), and lexnames (which may come from our asset).
_REQUIRED = tuple(f"{kind}.{pos}" for kind in ("data", "index") for pos in ("noun", "verb", "adj", "adv")) + (
    "noun.exc", "verb.exc", "adj.exc", "adv.exc", "index.sense",
)
_OPTIONAL = ("cntlist.rev", "lexnames")
INSTALL_HINT = (
    "METEOR needs WordNet 3.0 offline. Install it with one of: "
    "`apt-get install -y --no-install-recommends wordnet-base wordnet-sense-index` (Debian/Ubuntu); "
    "`python -m nltk.downloader wordnet` (nltk's own copy); "
    "or set ICMA_WORDNET_DIR to a WordNet 3.0 `dict` folder."
)


class WordNetMissingError(RuntimeError):
    """WordNet could not be found offline; the message says how to install it."""


def _cache_root() -> pathlib.Path:
    """Where the nltk-layout copy lives: `$ICMA_CACHE_DIR/nltk_data`, default `~/.cache/icma_jax/nltk_data`."""
    base = os.environ.get("ICMA_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "icma_jax")
    return pathlib.Path(base) / "nltk_data"


def _missing(folder: pathlib.Path) -> list[str]:
    """The required WordNet files absent from `folder`."""
    return [name for name in _REQUIRED if not (folder / name).is_file()]


def _mirror(source: pathlib.Path, nltk_root: pathlib.Path) -> pathlib.Path:
    """Copy a WordNet dict folder into `nltk_root/corpora/wordnet` (atomic; reused while it matches)."""
    target = nltk_root / "corpora" / "wordnet"
    same = all((target / n).is_file() and (target / n).stat().st_size == (source / n).stat().st_size for n in _REQUIRED)
    if same and (target / "lexnames").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=".wordnet-", dir=target.parent))
    for name in _REQUIRED + _OPTIONAL:
        src = source / name
        if not src.is_file():
            continue
        shutil.copyfile(src, tmp / name)  # copies: nltk refuses symlinks and hard links out of its roots
    if not (tmp / "lexnames").is_file():
        shutil.copyfile(LEXNAMES, tmp / "lexnames")
    try:
        os.rename(tmp, target)
    except OSError:  # a stale copy (other source) or another process's fresh one is in the way
        stale = target.with_name(f".stale-{os.getpid()}")
        try:
            os.rename(target, stale)
            os.rename(tmp, target)
        except OSError:  # lost a race with another process: its copy is as good as ours
            pass
        shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _allow(root: pathlib.Path) -> None:
    """Let nltk open files under `root` (nltk's documented opt-in: append it to `nltk.data.path`)."""
    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))


def _nltk_installed() -> bool:
    """True when nltk's own `corpora/wordnet` (folder or zip) is on `nltk.data.path`."""
    for name in ("corpora/wordnet", "corpora/wordnet.zip"):
        try:
            nltk.data.find(name)
            return True
        except LookupError:
            pass
    return False


def wordnet_source(folder: str | os.PathLike | None = None) -> pathlib.Path | None:
    """The WordNet dict folder `load_wordnet` mirrors, or None for nltk's installed corpus.

    Raises `WordNetMissingError` (with install steps) when neither is there.
    """
    explicit = folder or os.environ.get("ICMA_WORDNET_DIR")
    if explicit:
        path = pathlib.Path(explicit)
        missing = _missing(path)
        if missing:
            raise WordNetMissingError(
                f"{path}: not a WordNet 3.0 folder (missing {', '.join(missing)}). {INSTALL_HINT}"
            )
        return path
    if _nltk_installed():
        return None
    missing = _missing(DEBIAN_DIR)
    if not missing:
        return DEBIAN_DIR
    raise WordNetMissingError(
        f"WordNet not found (nltk has no corpora/wordnet; {DEBIAN_DIR} lacks {', '.join(missing)}). {INSTALL_HINT}"
    )


@functools.lru_cache(maxsize=4)
def load_wordnet(folder: str | None = None) -> WordNetCorpusReader:
    """A WordNet 3.0 reader for `meteor_score(..., wordnet=...)`, loaded once per folder."""
    source = wordnet_source(folder)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The multilingual functions are not available")
        if source is None:
            reader = nltk.corpus.wordnet  # nltk's own installed copy, exactly what MolT5 used
            reader.ensure_loaded()
        else:
            nltk_root = _cache_root()
            mirror = _mirror(source, nltk_root)
            _allow(nltk_root)
            reader = WordNetCorpusReader(str(mirror), None)
    if reader.get_version() != "3.0":
        raise WordNetMissingError(
            f"{source}: WordNet {reader.get_version()} found, MolT5's METEOR used 3.0. {INSTALL_HINT}"
        )
    return reader
