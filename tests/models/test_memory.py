"""Neighbour memory: label shares of the most similar training tickets, never a ticket itself."""

import numpy as np

from triage.models.memory import NeighbourMemory


def _unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


EMB = _unit([[1, 0, 0], [0.99, 0.1, 0], [0, 1, 0], [0, 0.98, 0.2], [0, 0, 1]])
LABELS = {"group": np.array([0, 0, 1, 1, -1])}


def test_shares_follow_the_nearest_labels_and_sum_to_one():
    memory = NeighbourMemory(EMB, LABELS, {"group": 2}, k=2, temperature=0.02)
    shares = memory.features(_unit([[1, 0.05, 0], [0.02, 1, 0.05]]))["group"]
    np.testing.assert_allclose(shares.sum(axis=1), 1.0, rtol=1e-6)
    assert shares[0].argmax() == 0 and shares[1].argmax() == 1


def test_leave_one_out_never_counts_a_row_as_its_own_neighbour():
    memory = NeighbourMemory(EMB, LABELS, {"group": 2}, k=1)
    own = memory.features(EMB, self_index=np.arange(len(EMB)))["group"]
    # row 0's nearest other row is row 1 (label 0); row 4 (no label) has nearest row 3 (label 1)
    assert own[0].argmax() == 0 and own[4].argmax() == 1
    # without leave-one-out, row 4 would be its own neighbour: no label, so no shares at all
    assert memory.features(EMB[4:])["group"].sum() == 0


def test_unlabelled_neighbours_add_nothing_and_blocks_agree(monkeypatch):
    memory = NeighbourMemory(EMB, LABELS, {"group": 2}, k=5)
    whole = memory.features(EMB)["group"]
    monkeypatch.setattr("triage.models.memory.BLOCK_ROWS", 2)
    np.testing.assert_allclose(memory.features(EMB)["group"], whole, rtol=1e-6)


def test_state_round_trip():
    memory = NeighbourMemory(EMB, LABELS, {"group": 2}, k=3, temperature=0.1)
    restored = NeighbourMemory.from_state(memory.state_arrays(), {"group": 2}, memory.settings())
    np.testing.assert_array_equal(restored.features(EMB)["group"], memory.features(EMB)["group"])
