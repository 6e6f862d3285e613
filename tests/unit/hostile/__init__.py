"""The parts of test_hostile_inputs.py: payloads, loopback servers, the per-example sandbox, strategies built from
each module's argument_spec, the arguments that work for each module, and the verdict on one example."""
