"""AO's units for llama processes: this node as messenger (MU), scheduler (SU) and compute unit (CU).

An AO client (`@permaweb/aoconnect` in legacy mode) sends signed ANS-104 items; the node
answers with its own records, in the formats every other call uses:

    spawn item S (caller-signed)    --bound by-->  Process record P (node-signed, request = S)
    message item M (caller-signed)  --bound by-->  Message record (node-signed: nonce, hash chain, request = M)
                                                   Result record (node-signed, as for every call)

`protocol` reads items and writes AO's result objects (pure); `publishing` writes the
node's Module and Scheduler-Location records; `binding` finds the record an AO item is
bound to; `units` is the MU and CU over the herder's CallService.
"""
