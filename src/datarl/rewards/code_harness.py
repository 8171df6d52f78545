"""In-sandbox test harness for assert-style code tests. Stdlib only: its source is preloaded into the fork
server (``datarl.sandbox``), so every run is a fork with these modules already imported.

Why a verdict cannot be faked from inside the run:
- the verdict goes to a dedicated fd, never stdout, and the fork server accepts only a line that starts
  with a per-run random nonce and names the child's own pid (a forked copy has another pid);
- the nonce is written by the fork server after the fork and read by the tests thread before any
  candidate code runs; it then lives only in that thread's frame, with the per-test results. No candidate
  code can reach that frame: the main thread is parked with every signal blocked (Python signal handlers,
  which receive the interrupted frame, never run; ``signal.signal`` outside the main thread is refused),
  and an audit hook denies sys._getframe, the traceback/generator/coroutine attributes that hand out
  frames, sys._current_frames, gc object walks, ctypes, CPython's _test* modules, trace/profile hooks
  and new audit hooks; /proc is not mounted for the run and the process is non-dumpable;
- every test statement is compiled before the candidate's code runs, and everything the harness calls
  afterwards is bound as a default argument or lives in this module's private namespace (it runs with
  its own copy of the builtins), so monkeypatching builtins or modules changes nothing here;
- SystemExit (``sys.exit`` and the sandbox's ``exit``/``quit`` builtins), KeyboardInterrupt and any
  BaseException from the candidate are caught per test; os._exit or a thread that kills the process
  leaves no verdict, which scores 0; atexit and sys.excepthook never run
  (the harness leaves with os._exit); other threads still alive after the tests fail the run, and every
  other process of the run is killed before the verdict is written;
- test asserts are rewritten by the caller (``datarl.rewards.code_tests``) to compare plain values:
  candidate objects are converted to builtin ints, strs, lists, dicts... through the base types' own
  slots, so an ``__eq__`` that always says True, or an ``int`` subclass that lies, compares by its real
  value or not at all.
Not covered: CPython audit hooks are not a security boundary; a candidate that finds a route to a frame
or to raw memory not listed above could forge a verdict (it still cannot leave the sandbox).
"""

import _thread
import builtins
import collections
import ctypes
import fractions
import json
import operator
import os
import signal
import sys

for _name in (
    "typing",
    "math",
    "re",
    "itertools",
    "functools",
    "heapq",
    "bisect",
    "string",
    "random",
    "statistics",
    "decimal",
    "datetime",
    "copy",
    "hashlib",
    "array",
    "numbers",
    "enum",
):
    try:  # warm imports: the run is a fork, so these cost nothing per program
        __import__(_name)
    except ImportError:
        pass

_BLOCKED = (
    "sys._getframe",
    "sys._current_frames",
    "sys._current_exceptions",
    "sys.settrace",
    "sys.setprofile",
    "sys.addaudithook",
    "gc.get_",
    "ctypes.",
    "cpython.PyInterpreterState_",
    "sys.monitoring",
)
# attribute reads that hand out a frame (the way to another frame's locals); __code__ etc. stay readable
_FRAME_ATTRS = frozenset(
    ("tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back", "f_locals", "f_globals", "gi_yieldfrom", "cr_await")
)
_ERRORS = {"sys._getframe": ValueError, "sys.addaudithook": RuntimeError}
# CPython's test extensions poke at memory and frames directly
_BLOCKED_MODULES = frozenset(
    (
        "_testcapi",
        "_testinternalcapi",
        "_testbuffer",
        "_testmultiphase",
        "_testimportmultiple",
        "_testsinglephase",
        "_xxsubinterpreters",
        "_xxtestfuzz",
    )
)
_PLAIN = (int, float, str, bytes, bool, complex, type(None))
_TRUSTED = (range, fractions.Fraction, type(Ellipsis))
# identities, not `in` on types: a candidate metaclass could make its class compare equal to int
_PLAIN_IDS = frozenset(id(t) for t in _PLAIN)
_TRUSTED_IDS = frozenset(id(t) for t in _TRUSTED)
_DEQUE, _ODICT, _COUNTER = collections.deque, collections.OrderedDict, collections.Counter
_BASES = (
    (bool, None),
    (int, int.__index__),
    (float, float.__float__),
    (str, str.__str__),
    (bytes, bytes.__bytes__),
    (complex, complex.__complex__),
)
_OPS = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "in": None,
    "not in": None,
    "is": operator.is_,
    "is not": operator.is_not,
}


class Opaque:
    """Stands for a value the harness will not trust: equal to nothing, not even itself."""

    __slots__ = ()
    __hash__ = object.__hash__

    def __eq__(self, other):
        return False

    def __ne__(self, other):
        return True

    def __repr__(self):
        return "<untrusted object>"


def plain(x, depth=0, _type=type, _issub=issubclass, _len=len, _range=range):
    """A copy of ``x`` made only of builtin values, read through the base types' own slots."""
    t = _type(x)
    if id(t) in _PLAIN_IDS or id(t) in _TRUSTED_IDS:
        return x
    if depth > 100:
        return Opaque()
    d = depth + 1
    if t is list or t is tuple or _issub(t, (list, tuple)):
        base = list if _issub(t, list) else tuple
        n = base.__len__(x)
        return base([plain(base.__getitem__(x, i), d) for i in _range(n)])
    if _issub(t, dict):
        return {plain(k, d): plain(v, d) for k, v in dict.items(x)}
    if _issub(t, (set, frozenset)):
        base = set if _issub(t, set) else frozenset
        return frozenset(plain(e, d) for e in base.__iter__(x))
    for base, conv in _BASES:
        if conv is not None and _issub(t, base):
            return conv(x)
    if t is _DEQUE or t is _ODICT or t is _COUNTER:
        return plain(list(x) if t is _DEQUE else dict(x), d)
    return Opaque()


def cmp(ops, *operands):
    """``a OP b OP c`` on plain copies of the operands (``is``/``is not`` use the objects themselves)."""
    values = [plain(v) for v in operands]
    for i, op in enumerate(ops):
        if op in ("is", "is not"):
            ok = _OPS[op](operands[i], operands[i + 1])
        elif op in ("in", "not in"):
            ok = _contains(values[i + 1], values[i])
            ok = ok if op == "in" else not ok
        elif type(values[i]) is Opaque or type(values[i + 1]) is Opaque:
            ok = op == "!="
        else:
            ok = _OPS[op](values[i], values[i + 1])
        if ok is not True and ok is not False:
            ok = False
        if not ok:
            return False
    return True


def _contains(container, item):
    if type(container) in (str, bytes):
        return type(item) is type(container) and item in container
    if type(container) is dict:
        container = container.keys()
    if type(container) in (list, tuple, frozenset, type({}.keys())):
        return any(type(e) is not Opaque and e == item for e in container)
    return False


def truth(x):
    v = plain(x)
    return False if type(v) is Opaque else bool(v)


def p(x):
    return plain(x)


_libc = ctypes.CDLL(None)
_HELPERS = {"__dr_cmp__": cmp, "__dr_truth__": truth, "__dr_p__": p}
_ALL_SIGNALS = frozenset(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP}
_STACK_BYTES = 64 * 1024 * 1024  # the tests thread's stack: room for deep recursion, like a main thread


def _describe(e):
    try:
        name = type(e).__name__
    except BaseException:
        name = "?"
    try:
        text = str(e)[:300]
    except BaseException:
        text = ""
    return str.__str__(name) + (": " + str.__str__(text) if text else "")


def run_assert(
    payload,
    res_fd,
    nonce_fd,
    isolated,
    _start=_thread.start_new_thread,
    _lock=_thread.allocate_lock,
    _sigmask=signal.pthread_sigmask,
):
    """Park the main thread with every signal blocked, so no Python signal handler ever runs (a handler
    gets the interrupted frame); run everything in one tests thread, which writes the verdict and exits."""
    _sigmask(signal.SIG_BLOCK, _ALL_SIGNALS)
    _thread.stack_size(_STACK_BYTES)
    cpus = os.sched_getaffinity(0)
    try:  # start the tests thread on this CPU (the main thread is about to sleep): no cross-CPU wakeup
        os.sched_setaffinity(0, {_libc.sched_getcpu()})
    except OSError:
        pass
    _start(_tests_thread, (payload, res_fd, nonce_fd, isolated, cpus))
    parked = _lock()
    parked.acquire()
    while True:
        parked.acquire()


def _tests_thread(
    payload,
    res_fd,
    nonce_fd,
    isolated,
    cpus,
    _exec=exec,
    _compile=compile,
    _write=os.write,
    _read=os.read,
    _close=os.close,
    _exit=os._exit,
    _getpid=os.getpid,
    _getppid=os.getppid,
    _kill=os.kill,
    _listdir=os.listdir,
    _enc=json.encoder.encode_basestring_ascii,
    _dict=dict,
    _len=len,
    _BaseException=BaseException,
    _describe=_describe,
    _helpers=_HELPERS,
    _sigmask=signal.pthread_sigmask,
):
    """Candidate, then each test; one nonce-tagged verdict line to ``res_fd``; then the process exits.

    The nonce is read from ``nonce_fd`` before any candidate code runs and exists only in this frame, which
    no candidate code can reach (no frame access, no signal handlers, no gc walks)."""
    _sigmask(signal.SIG_UNBLOCK, _ALL_SIGNALS)
    try:
        os.sched_setaffinity(0, cpus)
    except OSError:
        pass
    prefix = _read(nonce_fd, 64).strip() + b" "
    _close(nonce_fd)
    pid = _getpid()
    passed, errors = [], []
    n_tests = _len(payload["tests"])

    def finish(phase):
        bits = "".join("1" if ok else "0" for ok in passed) + "0" * (n_tests - _len(passed))
        errs = ",".join(_enc(e) for e in errors)
        line = '{"pid": %d, "phase": %s, "passed": "%s", "errors": [%s]}' % (pid, _enc(phase), bits, errs)
        _write(res_fd, prefix + line.encode("ascii") + b"\n")
        _exit(0)

    try:
        cand = _compile(payload["code"], "<candidate>", "exec")
    except _BaseException as e:
        errors.append(_describe(e))
        finish("syntax")
    try:
        setup = _compile(payload.get("setup") or "", "<setup>", "exec")
        tests = [(_compile(src, "<test %d>" % i, "exec"), is_test) for i, (src, is_test) in enumerate(payload["tests"])]
    except _BaseException as e:
        errors.append("bad test code: " + _describe(e))
        finish("bad_tests")
    n_tests = sum(1 for _, is_test in tests if is_test)
    sys.addaudithook(_audit_hook)
    phase = "tests"
    ns = {"__name__": "__candidate__", "__builtins__": builtins}
    try:
        _exec(setup, ns)
        _exec(cand, ns)
    except _BaseException as e:
        errors.append(_describe(e))
        phase = "candidate"
    if phase == "tests":
        test_ns = _dict(ns)
        test_ns.update(_helpers)
        broken = None
        for code, is_test in tests:
            if broken is not None:
                if is_test:
                    passed.append(False)
                continue
            try:
                _exec(code, test_ns)
                ok = True
            except _BaseException as e:
                ok, err = False, _describe(e)
                if not is_test:
                    broken = err
                    errors.append(err)
            if is_test:
                passed.append(ok)
                if not ok:
                    errors.append(err)
    if isolated and _getppid() == 1:  # our parent is pid 1 of the run's own pid namespace
        try:
            _kill(-1, signal.SIGKILL)  # every other process of the run (not us, not init)
        except OSError:
            pass
    if _len(_listdir(4 if isolated else "/proc/self/task")) > 2:  # the parked main thread and us
        errors.append("threads still running after the tests")
        passed[:] = [False] * _len(passed)
        phase = "stray_thread"
    finish(phase)


def _audit_hook(
    event,
    args,
    _blocked=_BLOCKED,
    _errors=_ERRORS,
    _isinstance=isinstance,
    _frame=_FRAME_ATTRS,
    _modules=_BLOCKED_MODULES,
    _RuntimeError=RuntimeError,
    _PermissionError=PermissionError,
    _AttributeError=AttributeError,
    _ImportError=ImportError,
    _len=len,
    _str=str,
):
    if event.startswith(_blocked):
        raise _errors.get(event, _RuntimeError)("blocked by the datarl sandbox: " + event)
    if event == "object.__getattr__" and _len(args) > 1 and args[1] in _frame:
        raise _AttributeError("blocked by the datarl sandbox: frame access")
    if event == "import" and args and args[0] in _modules:
        raise _ImportError("blocked by the datarl sandbox: " + _str(args[0]))
    if event == "open" and args and _isinstance(args[0], (str, bytes)):
        path = args[0] if _isinstance(args[0], str) else args[0].decode("utf-8", "replace")
        if path.startswith("/proc") and path.rstrip("/").endswith(("/mem", "/environ", "/maps")):
            raise _PermissionError("blocked by the datarl sandbox: " + path)


RUNNERS = {"run_assert": run_assert}
