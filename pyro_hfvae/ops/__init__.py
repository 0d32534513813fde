# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Tensor operations behind the objectives and the metrics: the aggregate posterior's log
marginals (minibatch-stratified or whole-data mixture) over a tree of groups, with the
mixture weights an argument; fused kernels for Normal and Concrete posteriors; and the collectives that
estimate the marginals over the global batch of a data-parallel run.
"""
from pyro_hfvae.ops.aggregate_posterior import (
    TreeMarginals,
    VariableScore,
    aggregate_log_marginals,
    stratified_log_weights,
    tree_marginals,
)
from pyro_hfvae.ops.distributed import (
    GlobalBatch,
    PeerRankError,
    gather_rows,
    global_logsumexp,
    global_marginals,
    global_stratified_log_weights,
    rank_and_world_size,
)
from pyro_hfvae.ops.fused_marginals import (
    KERNELS,
    FusedTable,
    concrete_pairwise_marginals,
    fused_table,
    normal_pairwise_marginals,
)
from pyro_hfvae.ops.logsumexp import EXP_FLOOR, floored_exp, safe_logsumexp
from pyro_hfvae.ops.mixture import (
    LogMarginals,
    check_memory_budget,
    groups_to_tree,
    mixture_log_marginals,
    tc_term_name,
)
from pyro_hfvae.ops.pairwise import pairwise_log_prob

__all__ = [
    "EXP_FLOOR",
    "KERNELS",
    "FusedTable",
    "GlobalBatch",
    "LogMarginals",
    "PeerRankError",
    "TreeMarginals",
    "VariableScore",
    "aggregate_log_marginals",
    "check_memory_budget",
    "concrete_pairwise_marginals",
    "floored_exp",
    "fused_table",
    "gather_rows",
    "global_logsumexp",
    "global_marginals",
    "global_stratified_log_weights",
    "groups_to_tree",
    "mixture_log_marginals",
    "normal_pairwise_marginals",
    "pairwise_log_prob",
    "rank_and_world_size",
    "safe_logsumexp",
    "stratified_log_weights",
    "tc_term_name",
    "tree_marginals",
]
