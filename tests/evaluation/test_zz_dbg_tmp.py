import sys
sys.path.insert(0, "/work/main/tests/evaluation")
from test_instruction_following import *  # noqa
from test_instruction_following import planted_run  # noqa

def test_dbg(planted_run):
    run = planted_run(methods=("PSR",))
    print(run.responses[["method","alpha","response","strict"]])
    print(run.steerers)
