"""Mapping network: normalisation, broadcasting, truncation and the w_avg tracker."""

from __future__ import annotations

import pytest
import torch
from numerics import assert_close, fan_in_sum

from mimic3d.nn import MappingNetwork, normalize_2nd_moment


def make_mapping(**kwargs) -> MappingNetwork:
    torch.manual_seed(0)
    mapping = MappingNetwork(z_dim=16, c_dim=25, w_dim=32, num_ws=6, num_layers=2, **kwargs)
    with torch.no_grad():
        mapping.w_avg.normal_()
    return mapping


def inputs(n: int = 4):
    generator = torch.Generator().manual_seed(1)
    return torch.randn(n, 16, generator=generator), torch.randn(n, 25, generator=generator)


def test_normalize_2nd_moment():
    x = torch.randn(5, 10) * 7
    assert_close(normalize_2nd_moment(x).square().mean(dim=1), torch.ones(5), terms=10, depth=2)


def test_structure_and_equalised_lr():
    mapping = make_mapping()
    names = set(mapping.state_dict())
    assert names == {
        "embed.weight",
        "embed.bias",
        "fc0.weight",
        "fc0.bias",
        "fc1.weight",
        "fc1.bias",
        "w_avg",
    }
    assert mapping.fc0.weight.shape == (32, 16 + 32)  # z concatenated with the 32-d camera embedding
    assert mapping.fc0.weight.std().item() == pytest.approx(100, rel=0.1)  # randn / lr_multiplier 0.01
    assert mapping.embed.weight.std().item() == pytest.approx(1, rel=0.1)  # the embedding has lr 1


def test_broadcast_and_z_scale_invariance():
    mapping = make_mapping()
    z, c = inputs()
    ws = mapping(z, c)
    assert ws.shape == (4, 6, 32)
    torch.testing.assert_close(ws, ws[:, :1].expand_as(ws))
    assert_close(mapping(z * 5, c), ws, terms=fan_in_sum(mapping))  # z normalised by its 2nd moment
    assert not torch.allclose(mapping(z, -c), ws)  # the camera label does matter


def test_truncation_psi_one_zero_and_cutoff():
    mapping = make_mapping()
    z, c = inputs()
    ws = mapping(z, c)
    torch.testing.assert_close(mapping(z, c, truncation_psi=1), ws)
    torch.testing.assert_close(mapping(z, c, truncation_psi=0), mapping.w_avg.expand_as(ws))
    half = mapping(z, c, truncation_psi=0.5, truncation_cutoff=2)
    torch.testing.assert_close(half[:, :2], mapping.w_avg + 0.5 * (ws[:, :2] - mapping.w_avg))
    torch.testing.assert_close(half[:, 2:], ws[:, 2:])


def test_w_avg_update_uses_beta():
    mapping = make_mapping(w_avg_beta=0.9)
    z, c = inputs()
    before = mapping.w_avg.clone()
    ws = mapping(z, c, update_emas=True)
    torch.testing.assert_close(mapping.w_avg, 0.9 * before + 0.1 * ws[:, 0].mean(dim=0))
    mapping(z, c)
    torch.testing.assert_close(mapping.w_avg, 0.9 * before + 0.1 * ws[:, 0].mean(dim=0))  # no update


def test_default_beta_and_label_only_mapping():
    assert MappingNetwork(z_dim=4, c_dim=0, w_dim=8, num_ws=2).w_avg_beta == 0.998
    cond = MappingNetwork(z_dim=0, c_dim=25, w_dim=16, num_ws=None, w_avg_beta=None)
    assert cond.num_layers == 8 and "w_avg" not in cond.state_dict()
    assert cond(None, torch.randn(3, 25)).shape == (3, 16)
    with pytest.raises(ValueError, match="w_avg"):
        cond(None, torch.randn(3, 25), truncation_psi=0.5)


def test_rejects_bad_input():
    mapping = make_mapping()
    z, c = inputs()
    with pytest.raises(ValueError, match=r"z must be \[N, 16\]"):
        mapping(z[:, :8], c)
    with pytest.raises(ValueError, match=r"c must be \[N, 25\]"):
        mapping(z, None)
    with pytest.raises(ValueError, match="z_dim"):
        MappingNetwork(z_dim=0, c_dim=0, w_dim=8, num_ws=1)
