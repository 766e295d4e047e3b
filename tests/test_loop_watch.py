"""The slow-callback watch itself (tests/loop_watch.py): product code that blocks the loop
fails the test; a test's own slow coroutine does not, nor a product step whose time went to
the garbage collector."""
from __future__ import annotations

PROBE = '''
import asyncio, time, types

BUSY = "import time\\nasync def block():\\n    end = time.thread_time() + 0.25\\n    while time.thread_time() < end:\\n        pass\\n"

def _coroutine_in(path, text=BUSY, name="block"):
    mod = types.ModuleType("probe")
    exec(compile(text, path, "exec"), mod.__dict__)
    return getattr(mod, name)

def test_product_blocks():
    block = _coroutine_in(PRODUCT_FILE)
    async def main():
        await asyncio.create_task(block())
    asyncio.run(main())

def test_product_step_that_only_collects_garbage():
    # the collector's time is not the step's own: a full collection of a big heap, from product code
    import gc
    junk = [[i] for i in range(3_000_000)]
    collect = _coroutine_in(PRODUCT_FILE, "import gc\\nasync def collect():\\n    gc.collect()\\n    gc.collect()\\n", "collect")
    async def main():
        await asyncio.create_task(collect())
    asyncio.run(main())
    del junk

def test_test_code_blocks():
    async def main():
        end = time.thread_time() + 0.25
        while time.thread_time() < end:
            pass
    asyncio.run(main())
'''


def test_blocking_product_callback_fails_the_test(pytester):
    from loop_watch import ROOT

    pytester.makeconftest('pytest_plugins = ["loop_watch"]\n')
    pytester.makepyfile(test_probe=PROBE.replace("PRODUCT_FILE", repr(str(ROOT / "assistant" / "probe.py"))))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--rootdir={pytester.path}",
                                           "-o", f"pythonpath={ROOT / 'tests'}")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*event loop was blocked by product code*", "*coro=<block()*assistant/probe.py*kept the loop busy*"])
