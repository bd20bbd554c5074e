"""CKKS parameter validation against the 128-bit table and the automatic choice from depth."""

from __future__ import annotations

import pytest

from toolkit.encrypted.params import SECURITY_TABLE_128, ParamError, choose_params, validate_params


def test_valid_parameters_accepted():
    p = validate_params(16384, [60, 40, 40, 40, 40, 40, 40, 40, 60], 40)
    assert p.levels == 7 and p.total_bits == 400 and not p.test_only
    assert p.headroom(p.levels) == 2.0 ** (60 - 40 - 1)


@pytest.mark.parametrize(("n", "bits", "scale", "field"), [
    (8192, [60, 40, 40, 40, 60], 40, "coeff_mod_bit_sizes"),        # 240 > 218 bits: insecure
    (16384, [60] + [40] * 9 + [60], 40, "coeff_mod_bit_sizes"),       # 480 > 438
    (8192, [60, 40, 40, 60], 50, "scale_bits"),                       # scale != middle primes
    (8192, [40, 25, 25, 25, 40], 25, "coeff_mod_bit_sizes"),          # middle primes under 30 bits
    (8192, [40, 30, 35, 40], 30, "coeff_mod_bit_sizes"),              # middle primes differ
    (8192, [30, 30, 30, 40], 30, "coeff_mod_bit_sizes"),              # q0 not above the scale
    (8192, [61, 40, 60], 40, "coeff_mod_bit_sizes"),                  # prime above 60 bits
    (12288, [60, 40, 60], 40, "poly_modulus_degree"),                 # not a supported ring
])
def test_insecure_or_inconsistent_parameters_refused(n, bits, scale, field):
    with pytest.raises(ParamError) as exc:
        validate_params(n, bits, scale)
    assert field in exc.value.field


def test_insecure_accepted_only_as_test_only():
    p = validate_params(8192, [60, 40, 40, 40, 60], 40, allow_insecure=True)
    assert p.test_only


@pytest.mark.parametrize("depth", [1, 3, 5, 7])
def test_choose_params_fits_depth_and_is_secure(depth):
    p = choose_params(depth)
    assert p.levels >= depth and p.levels % depth == 0
    assert p.total_bits <= SECURITY_TABLE_128[p.poly_modulus_degree]
    assert p.scale_bits >= 35
    validate_params(p.poly_modulus_degree, list(p.coeff_mod_bit_sizes), p.scale_bits)


def test_low_depth_fits_a_smaller_ring_than_baseline():
    assert choose_params(3).poly_modulus_degree == 8192
    assert choose_params(5).poly_modulus_degree == 16384


def test_choose_params_refuses_impossible_depth():
    with pytest.raises(ParamError):
        choose_params(40, max_poly_modulus_degree=16384)
