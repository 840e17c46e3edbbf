"""What the tests share and are not tests themselves: the worker harness, servers (a scripted LLM, S3),
test workflows (loaded by workers through STEPLOG_WORKFLOW_MODULES=tests.support.workflows) and data."""
