"""medic.demo: the five scenarios staged on the Kubernetes API sandbox, and `medic demo`.

`scenarios` says what each scenario stages and what must come of it; `cluster` plays the
controllers (helm-controller, the Fleet agent, etcd-druid) on the sandbox; `stack` starts
nats-server, the sandbox and etcd and writes the settings the services read; `observer` follows
the bus and tells the story; `command` is `medic demo`. The end-to-end tests (tests/e2e) stage
the same scenarios and run the three services as separate processes.
"""
