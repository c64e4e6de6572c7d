"""The real etcd cluster used by tests and the demo: it starts, leads, moves, dies and cleans up."""

from __future__ import annotations

import aiohttp
import pytest

from medic.testing.etcd import EtcdCluster, EtcdClusterError, etcd_binary
from medic.testing.etcd import etcd_cluster as start_etcd_cluster
from medic.testing.waiting import eventually

pytestmark = pytest.mark.etcd


def test_binary_is_the_real_etcd_not_the_python_wrapper():
    binary = etcd_binary()
    assert binary.parts[-2:] == ("etcdbin", "etcd")
    assert binary.read_bytes()[:4] == b"\x7fELF"


async def test_three_members_start_healthy_with_one_leader(etcd_cluster: EtcdCluster):
    assert len(etcd_cluster.client_urls) == 3
    assert len(set(etcd_cluster.client_urls)) == 3
    for member in etcd_cluster.members:
        assert await etcd_cluster.healthy(member)
    leader = await etcd_cluster.wait_leader()
    assert leader in etcd_cluster.members


async def test_move_leader_hands_leadership_to_the_chosen_member(etcd_cluster: EtcdCluster):
    leader = await etcd_cluster.wait_leader()
    target = next(m for m in etcd_cluster.members if m is not leader)
    await etcd_cluster.move_leader(target)
    assert await etcd_cluster.leader() is target


async def test_killed_leader_is_replaced_and_comes_back_as_a_follower(etcd_cluster: EtcdCluster):
    leader = await etcd_cluster.wait_leader()
    etcd_cluster.kill(leader)
    assert not leader.running
    assert not await etcd_cluster.healthy(leader)
    successor = await etcd_cluster.wait_leader()
    assert successor is not leader
    await etcd_cluster.restart(leader)
    assert await etcd_cluster.healthy(leader)
    await eventually(lambda: etcd_cluster.healthy(successor), timeout=10)


async def test_cluster_stores_and_serves_keys_through_the_v3_gateway(etcd_cluster: EtcdCluster):
    # "a2V5" / "dmFsdWU=" are base64 of "key" / "value" (the gateway speaks base64 bytes).
    async with aiohttp.ClientSession() as session:
        put = f"{etcd_cluster.client_urls[0]}/v3/kv/put"
        async with session.post(put, json={"key": "a2V5", "value": "dmFsdWU="}) as response:
            assert response.status == 200
        get = f"{etcd_cluster.client_urls[2]}/v3/kv/range"
        async with session.post(get, json={"key": "a2V5"}) as response:
            body = await response.json()
    assert body["kvs"][0]["value"] == "dmFsdWU="


async def test_context_manager_removes_processes_and_directories():
    async with start_etcd_cluster(size=1) as cluster:
        member = cluster.members[0]
        process = member.process
        base_dir = cluster.base_dir
        assert process is not None
        assert base_dir is not None
        assert base_dir.exists()
        assert await cluster.healthy(member)
    assert process.poll() is not None
    assert not base_dir.exists()


@pytest.mark.parametrize(
    "lagging", [False, True], ids=["as-is", "members-exit-before-the-first-look"]
)
async def test_failed_start_raises_and_leaves_no_process_or_directory(lagging: bool):
    # etcd refuses an election timeout shorter than five heartbeats and exits at once.
    cluster = EtcdCluster(size=3, heartbeat_ms=200, election_ms=300)
    if lagging:  # as on a loaded machine: every member has exited before start() looks
        spawn = cluster.spawn_all

        def spawn_and_lag() -> None:
            spawn()
            for member in cluster.members:
                assert member.process is not None
                member.process.wait(timeout=10)

        cluster.spawn_all = spawn_and_lag  # type: ignore[method-assign]
    with pytest.raises(EtcdClusterError, match="exited"):
        await cluster.start()
    assert all(member.process is None for member in cluster.members)
    assert cluster.base_dir is not None
    assert not cluster.base_dir.exists()


async def test_paused_member_stops_answering_and_resumes(etcd_cluster: EtcdCluster):
    member = etcd_cluster.members[0]
    etcd_cluster.pause(member)
    try:
        assert not await etcd_cluster.healthy(member, timeout=0.3)
    finally:
        etcd_cluster.resume(member)
    await eventually(lambda: etcd_cluster.healthy(member), timeout=10)
