"""The launch contract: which environments start `jax.distributed`, and one-line errors for bad settings."""

import pytest

from icma_jax import distributed

GOOD = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}


def test_explicit_settings():
    s = distributed.launch_settings(GOOD)
    assert (s.cluster, s.coordinator_address, s.num_processes, s.process_id) == ("env", "10.0.0.1:1234", 4, 3)


def test_lone_process_initialises_nothing():
    assert distributed.launch_settings({}) is None
    assert distributed.launch_settings({**GOOD, "JAX_NUM_PROCESSES": "1", "JAX_PROCESS_ID": "0"}) is None
    # a one-task SLURM allocation or a one-rank mpirun is a single process
    assert distributed.launch_settings({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}) is None
    assert distributed.launch_settings({"OMPI_MCA_orte_hnp_uri": "x", "OMPI_COMM_WORLD_SIZE": "1"}) is None
    assert not distributed.initialize(env={})


@pytest.mark.parametrize("env, cluster", [
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "8"}, "slurm"),
    ({"OMPI_MCA_orte_hnp_uri": "1.0;tcp://10.0.0.1:5", "OMPI_COMM_WORLD_SIZE": "2"}, "openmpi"),
    ({"TPU_WORKER_HOSTNAMES": "t-0,t-1"}, "tpu"),
])
def test_cluster_detection_is_left_to_jax(env, cluster):
    s = distributed.launch_settings(env)
    assert s.cluster == cluster and s.coordinator_address is None and s.num_processes is None


@pytest.mark.parametrize("change, named", [
    ({"JAX_NUM_PROCESSES": ""}, "JAX_NUM_PROCESSES not set although JAX_COORDINATOR_ADDRESS, JAX_PROCESS_ID"),
    ({"JAX_PROCESS_ID": None}, "JAX_PROCESS_ID not set"),
    ({"JAX_COORDINATOR_ADDRESS": None, "JAX_PROCESS_ID": None}, "JAX_COORDINATOR_ADDRESS, JAX_PROCESS_ID not set"),
    ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1"}, "JAX_COORDINATOR_ADDRESS='10.0.0.1' is not host:port"),
    ({"JAX_COORDINATOR_ADDRESS": "h:99999"}, "JAX_COORDINATOR_ADDRESS='h:99999' is not host:port"),
    ({"JAX_NUM_PROCESSES": "two"}, "JAX_NUM_PROCESSES='two' is not an integer"),
    ({"JAX_NUM_PROCESSES": "0"}, "JAX_NUM_PROCESSES=0 must be >= 1"),
    ({"JAX_PROCESS_ID": "-1"}, "JAX_PROCESS_ID=-1 must be >= 0"),
    ({"JAX_PROCESS_ID": "4"}, "JAX_PROCESS_ID=4 must be below JAX_NUM_PROCESSES=4"),
])
def test_bad_or_partial_settings_name_the_variable(change, named):
    env = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    with pytest.raises(ValueError) as e:
        distributed.launch_settings(env)
    assert named in str(e.value) and "\n" not in str(e.value)


def test_split_across_processes_reads_device_ownership():
    """Pretend the 8 devices belong to 2 processes (4 each): FSDP over all 8 splits a leaf across them,
    FSDP pairs inside a process (data 4 x fsdp 2) do not."""
    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    class Dev:
        def __init__(self, d):
            self.d, self.process_index = d, d.id // 4

    def fake(sharding):
        class S:
            def devices_indices_map(self, shape):
                return {Dev(d): idx for d, idx in sharding.devices_indices_map(shape).items()}
        return S()

    devices = np.array(jax.devices()[:8])
    fsdp8 = NamedSharding(Mesh(devices.reshape(1, 8), ("data", "fsdp")), P("fsdp"))
    fsdp2 = NamedSharding(Mesh(devices.reshape(4, 2), ("data", "fsdp")), P("fsdp"))
    assert distributed.split_across_processes(fake(fsdp8), (16, 4))
    assert not distributed.split_across_processes(fake(fsdp2), (16, 4))
    assert not distributed.split_across_processes(fake(NamedSharding(fsdp8.mesh, P())), (16, 4))
