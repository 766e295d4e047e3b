"""The slow-callback watch itself (tests/loop_watch.py): product code that blocks the loop
fails the test; a test's own slow coroutine does not."""
from __future__ import annotations

PROBE = '''
import asyncio, time, types

BUSY = "import time\\nasync def block():\\n    end = time.thread_time() + 0.25\\n    while time.thread_time() < end:\\n        pass\\n"

def _coroutine_in(path):
    mod = types.ModuleType("probe")
    exec(compile(BUSY, path, "exec"), mod.__dict__)
    return mod.block

def test_product_blocks():
    block = _coroutine_in(PRODUCT_FILE)
    async def main():
        await asyncio.create_task(block())
    asyncio.run(main())

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
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*event loop was blocked by product code*", "*coro=<block()*assistant/probe.py*kept the loop busy*"])
