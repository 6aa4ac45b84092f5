"""Fixtures shared by the model tests: one tiny MiniLM model, trained once per session."""

from __future__ import annotations

import pytest
from model_tickets import RARE, labelled_tickets, tiny_config


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tiny models run fastest on one thread; on a shared 2-core CI box extra threads only wait."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tickets():
    return labelled_tickets(150, seed=0, rare=RARE)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, tickets):
    """A TrainingResult on the synthetic tickets (three fields, one rare group)."""
    from triage.models.training import train

    return train(tickets, tiny_config(tmp_path_factory.mktemp("encoders")))


@pytest.fixture(scope="session")
def stored(tmp_path_factory, trained):
    """A store holding ``trained`` as its current version: (store root, ModelVersion)."""
    from triage.models.store import ModelStore

    root = tmp_path_factory.mktemp("store")
    version, promoted, _ = ModelStore(root).register(trained)
    assert promoted
    return root, version
