import pytest

from edge.errors import VerificationInputError
from verifier.policy import (FAIL, PASS, Voucher, ceil_div, decide, load_catalog, resolve,
                             to_fen, yuan)


def codes(verdict):
    return [r.code for r in verdict.reasons]


def test_catalog_2020_has_all_27_items_with_caps():
    cat = load_catalog("2020")
    assert [it.no for it in cat.items] == list(range(1, 28))
    assert all(it.cap_fen for it in cat.items)
    per_device = {it.no: it.per_device_fen for it in cat.items if it.per_device_fen}
    assert per_device == {5: 150_000, 24: 150_000, 25: 80_000}
    assert cat.item("设备物联").cap_fen == 10_000_000
    assert cat.item(24).cap_fen == 25_000_000
    assert cat.item("能源管理（通用生产设备）").cap_fen == 20_000_000
    assert cat.item("生产协同II").no == 7 and cat.item("生产协同 II").no == 7
    assert cat.enterprise_cap_fen == 30_000_000
    assert cat.ratios_percent == {"prd": 70, "ewn": 80, "cluster": 80}


def test_catalog_2018_has_11_services_and_per_device_formulas():
    cat = load_catalog("2018-19")
    assert len(cat.items) == 11
    assert cat.item("生产设备状态监控").per_device_fen == 200_000
    assert cat.item("设备远程运维及服务").per_device_fen == 100_000
    assert cat.enterprise_cap_fen == 50_000_000 and cat.bonus_fen == 20_000_000


def test_unknown_item_and_programme_are_input_errors():
    with pytest.raises(VerificationInputError, match="no item"):
        load_catalog("2020").item("云上飞行")
    with pytest.raises(VerificationInputError, match="unknown programme"):
        load_catalog("2017")


@pytest.mark.parametrize("amount,required", [
    (100_000, 67),     # 66.67 -> 67
    (99_000, 66),      # exactly 66
    (99_000.01, 67),   # one fen more needs a whole extra machine
    (1_500, 1),
    (1, 1),
])
def test_required_devices_round_up(amount, required):
    assert resolve(Voucher(item="设备物联", amount=amount)).required_devices == required


def test_ceil_div_integer_exact_where_float_would_fail():
    # 0.1 + 0.2 style trouble: 4,500.03 yuan / 1,500.01 yuan is exactly 3 in fen
    assert ceil_div(to_fen("4500.03"), to_fen("1500.01")) == 3
    assert to_fen(1500.1) == 150_010 and yuan(10_000_050) == "100,000.50"
    with pytest.raises(VerificationInputError):
        to_fen("12.345")
    with pytest.raises(VerificationInputError):
        to_fen(-5)


def test_pass_and_fail_with_supported_amount():
    terms = resolve(Voucher(item="设备物联", amount=100_000))
    assert decide(terms, 67).verdict == PASS
    v = decide(terms, 40)
    assert v.verdict == FAIL and codes(v) == ["too_few_devices"]
    assert v.supported_amount_fen == 40 * 150_000
    assert any("⌈100,000.00 ÷ 1,500.00⌉ = 67" in line for line in v.arithmetic)


def test_contract_amount_times_regional_ratio_capped_by_item():
    prd = resolve(Voucher(item="设备物联", contract_amount=100_000, region="prd"))
    assert prd.amount_fen == 7_000_000 and prd.required_devices == 47   # 70,000 / 1,500
    ewn = resolve(Voucher(item="设备物联", contract_amount=100_000, region="ewn"))
    assert ewn.amount_fen == 8_000_000 and ewn.required_devices == 54
    capped = resolve(Voucher(item="设备物联", contract_amount=200_000, region="cluster"))
    assert capped.amount_fen == 10_000_000  # 160,000 capped at 100,000
    lease = resolve(Voucher(item="工业设备租赁管理", contract_amount=10_001, region="prd"))
    assert lease.amount_fen == 700_070 and lease.required_devices == 9  # 7,000.70 / 800


def test_contract_needs_known_region():
    with pytest.raises(VerificationInputError, match="region"):
        resolve(Voucher(item="设备物联", contract_amount=100_000))
    with pytest.raises(VerificationInputError, match="amount"):
        resolve(Voucher(item="设备物联"))


def test_amount_above_cap_or_contract_share_fails():
    v = decide(resolve(Voucher(item="设备物联", amount=120_000)), 100)
    assert codes(v) == ["amount_above_item_cap"]
    v = decide(resolve(Voucher(item="设备物联", amount=80_000, contract_amount=100_000,
                               region="prd")), 100)
    assert codes(v) == ["amount_above_contract_share"]


def test_2018_per_device_formulas():
    t = resolve(Voucher(item="生产设备状态监控", programme="2018", contract_amount=150_000))
    assert t.amount_fen == 15_000_000 and t.required_devices == 75
    t = resolve(Voucher(item="设备远程运维及服务", programme="2019", amount=30_500))
    assert t.required_devices == 31
    v = decide(t, 20)
    assert v.supported_amount_fen == 2_000_000  # 20 × 1,000
    # a capped 2018 item: min(cap, contract fee), and no device rule
    t = resolve(Voucher(item="智能排单调度", programme="2018", contract_amount=800_000))
    assert t.amount_fen == 50_000_000 and t.required_devices is None
    assert decide(t, 0).verdict == PASS


def test_enterprise_caps_and_bonus():
    v = decide(resolve(Voucher(item="设备物联", amount=100_000, prior_subsidy=250_000)), 70)
    assert codes(v) == ["enterprise_cap_exceeded"]
    t = resolve(Voucher(item="生产设备状态监控", programme="2018", amount=300_000,
                        prior_subsidy=300_000))
    assert [p.code for p in t.problems] == ["enterprise_cap_exceeded"]
    t = resolve(Voucher(item="生产设备状态监控", programme="2018", amount=300_000,
                        prior_subsidy=300_000, lianghua_bonus=True))
    assert t.problems == ()  # 500,000 + 200,000 − 300,000 = 400,000 headroom


@pytest.mark.parametrize("prior,excluded", [
    ("设备管理", True), ("设备智能", True), ("设备物联", True), ("能源管理（通用配电设备）", False),
    ("生产协同 I", False),
])
def test_exclusions_between_items(prior, excluded):
    v = decide(resolve(Voucher(item="设备物联", amount=3_000, prior_items=(prior,))), 2)
    assert (codes(v) == ["excluded_by_prior"]) is excluded


def test_energy_group_exclusion():
    t = resolve(Voucher(item=16, amount=100_000, prior_items=("14",)))
    assert [p.code for p in t.problems] == ["excluded_by_prior"]
    assert "能源管理" in t.problems[0].message


def test_voucher_from_mapping_rejects_unknown_keys(tmp_path):
    p = tmp_path / "v.yaml"
    p.write_text("item: 设备物联\namout: 100000\n", encoding="utf-8")
    from verifier.policy import load_voucher
    with pytest.raises(VerificationInputError, match="amout"):
        load_voucher(str(p))
    p.write_text("item: 设备物联\namount: 100000\nprogramme: '2020'\n", encoding="utf-8")
    assert resolve(load_voucher(str(p))).required_devices == 67
