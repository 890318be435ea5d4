"""Inference: llama.cpp on weights stored by ID, every call a signed record, replay bit for bit.

Stable API (the herder and the gateway build on these names; see docs/DESIGN.md):

    from inference.context import Inference
    from inference.sampling import EngineSettings, SamplingParams

    inference = Inference.open(store, source=None)      # one per store; close() with it
    model_id = inference.models.add("model.gguf")        # -> ID (same bytes: same ID)
    inference.models.list() -> [ModelEntry(id, size, tags)]
    inference.models.resolve(model_id) -> Path            # verified, mmap-able, no copy

    pid = inference.processes.spawn(model_id, settings=None, system_prompt=None, chat_template=None)
    draft = inference.processes.draft(model_id, ...)      # the same, unwritten: plan_for(draft, ...)
    pid = inference.processes.write(draft)                #   checks a call before anything is written
    inference.send(pid, caller, prompt=.. | messages=[..], sampling=SamplingParams(..), fee=0,
                   on_text=cb) -> CallResult(process_id, message_id, result_id, text, token_ids, ...)
    # the same, split for a herder that runs llama.cpp in a worker process:
    plan = inference.processes.plan(pid, prompt=.. | messages=.., sampling=..)   # plan.prompt_tokens
    call, msg = inference.messages.start_message(plan, caller, fee)   # signs the Message; stores it on a thread
    out = execution.execute_job(call.to_json(), job)                  # in a worker (a herder job)
    res = inference.messages.write_result(call, out, msg)             # signs the Result, stores it after msg
    inference.messages.write_failure(call, reason, msg)              # a call that could not run

    replay.replay_call(inference, message_or_result_id, on_identity=cb, runner=None) -> ReplayReport
    replay.replay_process(inference, pid, on_identity=cb, on_call=cb) -> ProcessReplayReport

    service = herder.service.CallService.open(inference, data_dir, HerderSettings.load(data_dir))
    running = service.start(plan, caller, payment)       # priced, reserved, queued, recorded

Errors are `inference.errors.InferenceError` subclasses; each has an HTTP `status`.
"""
