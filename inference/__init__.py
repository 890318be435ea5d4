"""Inference: llama.cpp on weights stored by ID, every call a signed record, replay bit for bit.

Stable API (other modules, the herder and the gateway build on these names):

    from inference import models, processes, replay
    from inference.engine import Engine, EngineSettings, SamplingParams, Generation, engine_identity

    model_id = models.add_model(store, "model.gguf")            # -> ID (same bytes: same ID)
    models.list_models(store) -> [ModelEntry(id, size, tags)]
    models.resolve_model(store, model_id, source=None) -> Path  # verified, mmap-able, no copy
    Engine.load(store, model_id, EngineSettings(...)) -> Engine
    engine.generate(prompt, SamplingParams(seed=..), special=False, on_text=cb) -> Generation

    pid = processes.spawn(store, model_id, settings=None, system_prompt=None, chat_template=None, source=None)
    draft = processes.draft_process(store, model_id, ...)   # the same, unwritten: plan_for(draft, ...)
    pid = processes.write_process(store, draft)             #   checks a call before anything is written
    processes.send(store, pid, caller, prompt=.. | messages=[..], sampling=SamplingParams(..), fee=0,
                   on_text=cb) -> CallResult(process_id, message_id, result_id, text, token_ids,
                                             prompt_tokens, completion_tokens, finish_reason, seed, timings)
    # the same, split for a herder that runs llama.cpp in a worker process:
    plan = processes.plan_call(store, pid, prompt=.. | messages=.., sampling=..)  # plan.prompt_tokens, plan.max_tokens
    call, msg = processes.start_message(store, plan, caller, fee)  # signs the Message; stores it on a thread
    out = processes.execute_job(call.to_json(), emit)  # in a worker: "inference.processes:execute_job"
    res = processes.write_result(store, call, out, msg)  # signs the Result, stores it once msg is durable
    processes.write_failure(store, call, reason, msg)   # a call that could not run gets an "error" Result
    call = processes.prepare_message(store, plan, caller, fee)  # start_message, then wait until stored
    processes.run_planned(store, plan, caller, fee, on_text=cb)  # send after planning: prompt evaluated
                                                                 # while the Message is signed

    replay.replay_call(store, message_or_result_id, on_identity=cb, source=None, runner=None) -> ReplayReport
    # runner: replay.run_here (default) or replay.herder_runner(herder): the model runs in a worker
    replay.replay_process(store, pid, on_identity=cb, on_call=cb, source=None) -> ProcessReplayReport
    # source: a storing DataSource (ReadThroughSource) for models/records not held here

Errors are `inference.errors.InferenceError` subclasses; each has an HTTP `status`.
"""
