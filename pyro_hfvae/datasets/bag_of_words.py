"""Bag-of-words corpora (e.g. 20 Newsgroups) with document categories, from an npz of CSR parts."""

import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from .labelled_dataset import LabelledDataset
from .observation_dataset import IndicesLike


class BagOfWords(LabelledDataset):
    """
    A bag-of-words corpus: each document a float32 vector of word counts over :attr:`vocabulary`,
    with its category as the one known factor. Read from an npz in the layout of 20 Newsgroups'
    "bydate" bag-of-words: the CSR parts ``Xtr_data``, ``Xtr_indices``, ``Xtr_indptr``,
    ``Xtr_shape`` (train split; ``Xte_*`` the test split), the labels ``ytr`` and ``yte``, the words
    ``vocab`` and the category names ``cats``.

    :meth:`observations` and :meth:`batches` return dense ``(n, vocabulary size)`` tensors, or
    sparse COO tensors with ``sparse=True``; single items and
    :meth:`sample_observations_from_factors` are always dense. :attr:`counts` holds the split as a
    :class:`scipy.sparse.csr_matrix`.

    :param path: the npz file.
    :type path: str or os.PathLike
    :param str split: ``"train"`` or ``"test"``.
    :param bool sparse: return batches as sparse COO tensors.
    :param bool return_factors: make items ``(observation, factors, index)``.
    :param device: where the counts are kept and observations are returned (default CPU).
    :type device: str or torch.device or None
    """

    factor_names = ("category",)
    _split_keys = {"train": ("Xtr", "ytr"), "test": ("Xte", "yte")}

    def __init__(
        self,
        path: str | os.PathLike,
        split: str = "train",
        *,
        sparse: bool = False,
        return_factors: bool = False,
        device: str | torch.device | None = None,
    ) -> None:
        import scipy.sparse

        if split not in self._split_keys:
            raise ValueError(f"expected split 'train' or 'test' but got {split!r}")
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"expected a bag-of-words npz at {path} but there is no such file"
            )
        if not zipfile.is_zipfile(path):
            raise ValueError(f"expected an npz (zip) archive at {path} but it is not one")
        matrix, labels = self._split_keys[split]
        keys = [
            f"{matrix}_data",
            f"{matrix}_indices",
            f"{matrix}_indptr",
            f"{matrix}_shape",
            labels,
            "vocab",
            "cats",
        ]
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in keys if key not in archive.files]
            if missing:
                raise ValueError(
                    f"expected the keys {keys} in {path} but {missing} are missing (found "
                    f"{sorted(archive.files)})"
                )
            data, indices, indptr, shape, labels, vocab, cats = (archive[key] for key in keys)
        if vocab.ndim != 1 or cats.ndim != 1:
            raise ValueError(
                f"expected 1-D arrays vocab and cats in {path} but got shapes {vocab.shape} and "
                f"{cats.shape}"
            )
        shape = tuple(int(s) for s in shape)
        if shape != (len(labels), len(vocab)):
            raise ValueError(
                f"expected {matrix}_shape = ({len(labels)} documents, {len(vocab)} words) in "
                f"{path} to match {self._split_keys[split][1]} and vocab but got {shape}"
            )
        try:
            counts = scipy.sparse.csr_matrix((data, indices, indptr), shape=shape)
            counts.check_format(full_check=True)
        except ValueError as error:
            raise ValueError(
                f"expected valid CSR parts {matrix}_* in {path} but they are not ({error})"
            ) from error
        if counts.nnz and counts.data.min() < 0:
            raise ValueError(
                f"expected non-negative word counts in {path} but found {counts.data.min()}"
            )
        counts.sum_duplicates()
        self.factor_sizes = (len(cats),)
        self.class_names = tuple(str(c) for c in cats)
        self.vocabulary = tuple(str(word) for word in vocab)
        self.observation_shape = (len(vocab),)
        super().__init__(labels, return_factors=return_factors, device=device)
        self.path, self.split, self.sparse = path, split, sparse
        #: The split's word counts, a scipy.sparse.csr_matrix of shape (documents, words).
        self.counts = counts
        self._row_starts = torch.from_numpy(counts.indptr.astype(np.int64)).to(self.device)
        self._columns = torch.from_numpy(counts.indices.astype(np.int64)).to(self.device)
        self._values = torch.from_numpy(counts.data.astype(np.float32)).to(self.device)

    def observations(self, indices: IndicesLike) -> torch.Tensor:
        """
        Word counts of the documents at ``indices``: float32 ``(n, vocabulary size)``, dense or
        (with ``sparse=True``) sparse COO, on :attr:`device`.

        :param indices: 1-D document indices.
        :type indices: torch.Tensor or numpy.ndarray or list
        :rtype: torch.Tensor
        """
        indices = self._index_tensor(indices)
        if not self.sparse:
            return self._observations(indices)
        rows, columns, values = self._gather(indices)
        return torch.sparse_coo_tensor(
            torch.stack([rows, columns]),
            values,
            size=(len(indices),) + self.observation_shape,
            is_coalesced=True,
            check_invariants=False,
        )

    def _observations(self, indices: torch.Tensor) -> torch.Tensor:
        rows, columns, values = self._gather(indices)
        dense = torch.zeros((len(indices),) + self.observation_shape, device=self.device)
        return dense.index_put_((rows, columns), values)

    def _gather(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # The nonzeros of the rows `indices` as (batch row, column, value), in row-major order.
        starts = self._row_starts[indices]
        lengths = self._row_starts[indices + 1] - starts
        batch_row = torch.repeat_interleave(torch.arange(len(indices), device=self.device), lengths)
        batch_starts = torch.cumsum(lengths, 0) - lengths
        position = (
            starts[batch_row]
            + torch.arange(len(batch_row), device=self.device)
            - batch_starts[batch_row]
        )
        return batch_row, self._columns[position], self._values[position]

    def _raw(self, index: np.ndarray):
        return self.counts[index]
