"""Rank resolution for every launcher, from patched environments, garbage included."""

import doctest
import re

import pytest

from job import ranks

OMPI = {"OMPI_COMM_WORLD_RANK": "5", "OMPI_COMM_WORLD_SIZE": "8",
        "OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "4"}
TORCH = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
         "NODE_RANK": "1", "GROUP_RANK": "1"}


def shard(rank):
    return rank.shard_index, rank.shard_count


def test_no_launcher_is_one_rank():
    rank = ranks.resolve(None, {})
    assert shard(rank) == (0, 1)
    assert "single rank" in rank.source


def test_selective_node_from_distrib_args():
    seed = {"local_rank": 0, "global_rank": 0, "world_size": 1, "node_count": 5,
            "local_size": 1, "node_rank": 3}
    one_process = {**OMPI, "OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "1",
                   "OMPI_COMM_WORLD_LOCAL_RANK": "0", "OMPI_COMM_WORLD_LOCAL_SIZE": "1"}
    rank = ranks.resolve(seed, one_process)  # one Azure ML node running a selective node
    assert shard(rank) == (3, 5)
    assert rank.source == "distribArgs"


@pytest.mark.parametrize("variable", ["OMPI_COMM_WORLD_SIZE", "WORLD_SIZE", "AZUREML_NODE_COUNT"])
def test_distrib_args_under_a_launcher_of_several_processes_is_refused(variable):
    seed = {"node_count": 5, "node_rank": 3}
    with pytest.raises(ranks.RankError, match=f"distribArgs.*{variable}=5"):
        ranks.resolve(seed, {variable: "5"})
    assert shard(ranks.resolve(seed, {variable: "5"}, "local")) == (3, 5)


def test_distrib_args_several_ranks_per_node_each_get_their_own_shard():
    shards = {shard(ranks.from_distrib_args({"node_count": 2, "local_size": 3,
                                             "node_rank": n, "local_rank": r}))
              for n in range(2) for r in range(3)}
    assert shards == {(i, 6) for i in range(6)}


def test_distrib_args_without_node_rank_uses_global_rank():
    rank = ranks.from_distrib_args({"global_rank": 5, "local_size": 2, "node_count": 3,
                                    "local_rank": 1})
    assert (rank.node_rank, shard(rank)) == (2, (5, 6))


def test_openmpi_variables():
    rank = ranks.resolve(None, OMPI)
    assert shard(rank) == (5, 8)
    assert (rank.node_rank, rank.node_count, rank.local_rank, rank.local_size) == (1, 2, 1, 4)
    assert "OpenMPI" in rank.source


def test_openmpi_uneven_processes_per_node_shard_by_global_rank():
    """5 processes, 2 per node (the last node has one): not ``node x local`` shards, so each
    process takes shard ``global rank`` of the world size, and the 5 cover it once."""
    found = []
    for global_rank in range(5):
        environ = {"OMPI_COMM_WORLD_RANK": str(global_rank), "OMPI_COMM_WORLD_SIZE": "5",
                   "OMPI_COMM_WORLD_LOCAL_RANK": str(global_rank % 2),
                   "OMPI_COMM_WORLD_LOCAL_SIZE": "2" if global_rank < 4 else "1"}
        rank = ranks.resolve(None, environ)
        assert (rank.node_rank, rank.node_count, rank.local_rank, rank.local_size) == (
            global_rank, 5, 0, 1)
        assert "OpenMPI" in rank.source
        found.append(shard(rank))
    assert found == [(index, 5) for index in range(5)]


def test_openmpi_wins_over_torch_variables():
    agreeing = {**TORCH, "RANK": "5", "WORLD_SIZE": "8", **OMPI}
    assert "OpenMPI" in ranks.resolve(None, agreeing).source


@pytest.mark.parametrize("changes, names", [
    ({"RANK": "3"}, "OMPI_COMM_WORLD_RANK=5 and RANK=3"),
    ({"WORLD_SIZE": "4"}, "OMPI_COMM_WORLD_SIZE=8 and WORLD_SIZE=4"),
])
def test_openmpi_and_torch_variables_that_disagree_are_refused(changes, names):
    with pytest.raises(ranks.RankError, match=names):
        ranks.resolve(None, {"RANK": "5", "WORLD_SIZE": "8", **OMPI, **changes})


def test_torchrun_variables():
    rank = ranks.resolve(None, TORCH)
    assert shard(rank) == (3, 4)
    assert (rank.node_rank, rank.local_rank) == (1, 1)
    assert "torchrun" in rank.source


def test_torchrun_minimal_variables():
    assert shard(ranks.resolve(None, {"RANK": "2", "WORLD_SIZE": "3"})) == (2, 3)


NO_LOCAL_SIZE = "LOCAL_WORLD_SIZE is not set"


@pytest.mark.parametrize("environ, expected, source", [
    # Azure ML's PyTorch distribution: no LOCAL_WORLD_SIZE; node 1 says 2 ranks per node
    ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "NODE_RANK": "1"}, (1, 2, 1, 2), None),
    ({"RANK": "2", "WORLD_SIZE": "4", "LOCAL_RANK": "0", "NODE_RANK": "1"}, (1, 2, 0, 2), None),
    ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "GROUP_RANK": "1"}, (1, 2, 1, 2), None),
    ({"RANK": "7", "WORLD_SIZE": "9", "LOCAL_RANK": "1", "NODE_RANK": "2"}, (2, 3, 1, 3), None),
    # node 0, no node rank, or one that does not fit: the ranks per node are unknown
    ({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "NODE_RANK": "0"}, (1, 4, 0, 1),
     NO_LOCAL_SIZE),
    ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}, (3, 4, 0, 1), NO_LOCAL_SIZE),
    ({"RANK": "4", "WORLD_SIZE": "5", "LOCAL_RANK": "0", "NODE_RANK": "3"}, (4, 5, 0, 1),
     NO_LOCAL_SIZE),
    ({"RANK": "3", "WORLD_SIZE": "5", "LOCAL_RANK": "1", "NODE_RANK": "1"}, (3, 5, 0, 1),
     NO_LOCAL_SIZE),  # 2 per node does not divide 5
    ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "0", "NODE_RANK": "3"}, (3, 4, 0, 1), None),
])
def test_torch_variables_without_local_world_size(environ, expected, source):
    """The shard is RANK of WORLD_SIZE; the ranks per node are derived where they can be."""
    rank = ranks.resolve(None, environ)
    assert (rank.node_rank, rank.node_count, rank.local_rank, rank.local_size) == expected
    assert shard(rank) == (int(environ["RANK"]), int(environ["WORLD_SIZE"]))
    assert rank.source.startswith("torchrun") and (source is None or source in rank.source)


def test_torch_ranks_without_local_world_size_cover_the_world_once():
    shards = [shard(ranks.resolve(None, {"RANK": str(r), "WORLD_SIZE": "6",
                                         "LOCAL_RANK": str(r % 3), "NODE_RANK": str(r // 3)}))
              for r in range(6)]
    assert shards == [(r, 6) for r in range(6)]


def test_one_azureml_node_without_a_task_index_is_one_rank():
    assert shard(ranks.resolve(None, {"AZUREML_NODE_COUNT": "1"})) == (0, 1)


def test_azureml_node_variables_without_launcher():
    rank = ranks.resolve(None, {"AZUREML_NODE_COUNT": "4", "AZ_BATCHAI_TASK_INDEX": "2"})
    assert shard(rank) == (2, 4)
    assert "Azure ML" in rank.source


def test_run_type_local_ignores_launcher_variables():
    assert shard(ranks.resolve(None, OMPI, "local")) == (0, 1)


@pytest.mark.parametrize("environ, name", [
    ({**OMPI, "OMPI_COMM_WORLD_RANK": "x"}, "OMPI_COMM_WORLD_RANK"),
    ({**OMPI, "OMPI_COMM_WORLD_RANK": "-1"}, "OMPI_COMM_WORLD_RANK"),
    ({**OMPI, "OMPI_COMM_WORLD_RANK": "8"}, "OMPI_COMM_WORLD_RANK"),
    ({**OMPI, "OMPI_COMM_WORLD_SIZE": "0"}, "OMPI_COMM_WORLD_SIZE"),
    ({**OMPI, "OMPI_COMM_WORLD_SIZE": ""}, "OMPI_COMM_WORLD_SIZE"),
    ({**OMPI, "OMPI_COMM_WORLD_LOCAL_RANK": "4"}, "OMPI_COMM_WORLD_LOCAL_RANK"),
    ({**OMPI, "OMPI_COMM_WORLD_LOCAL_SIZE": "1.5"}, "OMPI_COMM_WORLD_LOCAL_SIZE"),
    ({"OMPI_COMM_WORLD_RANK": "0"}, "OMPI_COMM_WORLD_SIZE"),
    ({"RANK": "4", "WORLD_SIZE": "4"}, "RANK"),
    ({"RANK": "zero", "WORLD_SIZE": "4"}, "RANK"),
    ({"WORLD_SIZE": "4"}, "RANK"),
    ({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "2"}, "LOCAL_RANK"),
    ({**TORCH, "NODE_RANK": "7"}, "NODE_RANK"),
    ({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "2"}, "LOCAL_RANK=2 .* RANK=1"),
    ({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "x", "NODE_RANK": "1"}, "LOCAL_RANK"),
    ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "NODE_RANK": "-1"}, "NODE_RANK"),
    ({"AZUREML_NODE_COUNT": "2", "AZ_BATCHAI_TASK_INDEX": "2"}, "AZ_BATCHAI_TASK_INDEX"),
    ({"AZUREML_NODE_COUNT": "3"}, "AZUREML_NODE_COUNT=3 is set without AZ_BATCHAI_TASK_INDEX"),
])
def test_bad_environment_names_the_variable(environ, name):
    with pytest.raises(ranks.RankError, match=name) as error:
        ranks.resolve(None, environ)
    unset = [v for v in (*ranks.OMPI_VARS, *ranks.TORCH_VARS, "NODE_RANK", "GROUP_RANK",
                         *ranks.AZUREML_NODE_VARS) if v not in environ]
    valued = set(re.findall(r"\b([A-Z][A-Z_]+)=", str(error.value)))  # "NAME=value"
    assert not valued & set(unset), str(error.value)  # no value of a variable that is not set


@pytest.mark.parametrize("args, name", [
    ({"node_count": 5, "node_rank": 5}, "distribArgs.node_rank"),
    ({"node_count": 0}, "distribArgs.node_count"),
    ({"node_count": 2, "node_rank": -1}, "distribArgs.node_rank"),
    ({"local_size": 2, "local_rank": 2}, "distribArgs.local_rank"),
    ({"node_count": "two"}, "distribArgs.node_count"),
    ({"global_rank": 4, "local_size": 2, "node_count": 2}, "distribArgs.global_rank"),
    ({"node_count": 5}, "distribArgs.node_count=5 is set without distribArgs.node_rank"),
])
def test_bad_distrib_args_names_the_key(args, name):
    with pytest.raises(ranks.RankError, match=name):
        ranks.from_distrib_args(args)


def test_describe_says_where_the_rank_came_from():
    text = ranks.resolve(None, OMPI).describe()
    assert text.startswith("rank 5 of 8") and "OpenMPI" in text


def test_docstring_examples():
    assert doctest.testmod(ranks).failed == 0
