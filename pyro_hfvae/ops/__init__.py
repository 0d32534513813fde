# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Tensor operations behind the objectives and the metrics: the aggregate posterior's log
marginals (minibatch-stratified or whole-data mixture) over a tree of groups.
"""
from pyro_hfvae.ops.aggregate_posterior import TreeMarginals, pairwise_log_prob, stratified_log_weights, tree_marginals
from pyro_hfvae.ops.fused_marginals import normal_pairwise_marginals

__all__ = [
    "TreeMarginals",
    "normal_pairwise_marginals",
    "pairwise_log_prob",
    "stratified_log_weights",
    "tree_marginals",
]
