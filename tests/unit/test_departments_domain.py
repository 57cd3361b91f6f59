"""The functional department (职能部门) aggregate, pure: codes and names checked,
renamed and retired with actor and reason, a retired one takes no new work, a
name held by one live department at a time."""
import pytest

from shared.errors import ValidationError
from services.organizations.departments.domain import (ALL_COLLEGES, Department,
                                                       DepartmentName, load_defaults)

ADMIN = {"sub": "zzb", "role": "org_admin"}


def test_a_department_is_keyed_by_its_code_and_renamed_and_retired_with_actor_and_reason():
    d = Department.add("publicity", "  宣传部 ", ADMIN, "设立")
    assert (d.code, d.name, d.status, d.id) == ("publicity", "宣传部", "active",
                                                Department.id_for("publicity"))
    d.rename("党委宣传部", ADMIN, "机构调整")
    d.retire(ADMIN, "职能并入党政办")
    events = d.collect_events()
    assert [type(e).__name__ for e in events] == ["Added", "Renamed", "Retired"]
    renamed, retired = events[1], events[2]
    assert (renamed.code, renamed.name, renamed.previous_name, renamed.actor, renamed.reason) \
        == ("publicity", "党委宣传部", "宣传部", ADMIN, "机构调整")
    assert (retired.code, retired.name, retired.reason) == ("publicity", "党委宣传部",
                                                            "职能并入党政办")
    assert not d.is_active and d.name == "党委宣传部"


@pytest.mark.parametrize("code,name,field", [
    ("Publicity", "宣传部", "code"), ("1dept", "宣传部", "code"), ("a" * 41, "宣传部", "code"),
    ("pub-lic", "宣传部", "code"), (ALL_COLLEGES[0], "各学院", "code"),
    ("publicity", "", "name"), ("publicity", "x" * 101, "name"),
    ("publicity", ALL_COLLEGES[1], "name"), ("publicity", None, "name"),
])
def test_bad_codes_and_names_are_refused_naming_the_field(code, name, field):
    with pytest.raises(ValidationError) as err:
        Department.add(code, name, ADMIN)
    assert err.value.fields == [field]


def test_a_retired_department_takes_no_new_work_nor_a_new_name():
    d = Department.add("admissions_employment", "招就办", ADMIN)
    with pytest.raises(ValidationError) as err:
        d.retire(ADMIN, None)
    assert err.value.fields == ["reason"]
    with pytest.raises(ValidationError) as err:
        d.rename("招就办", ADMIN)
    assert err.value.fields == ["name"] and "current name" in str(err.value)
    d.retire(ADMIN, "撤销")
    for change in (lambda: d.rename("招生就业处", ADMIN), lambda: d.retire(ADMIN, "again"),
                   lambda: d.require_active("lead_department")):
        with pytest.raises(ValidationError) as err:
            change()
        assert "retired" in str(err.value)
    assert len(d.collect_events()) == 2


def test_a_name_is_held_by_one_live_department_at_a_time():
    claim = DepartmentName(name="宣传部", code="publicity")
    assert claim.id == DepartmentName.create_id("宣传部")
    claim.claim("publicity")  # its own holder: nothing happens
    with pytest.raises(ValidationError) as err:
        claim.claim("propaganda")
    assert err.value.fields == ["name"] and "publicity" in str(err.value)
    claim.release("propaganda")  # not the holder: nothing happens
    claim.release("publicity")
    claim.claim("propaganda")
    assert claim.holder == "propaganda"
    assert [type(e).__name__ for e in claim.collect_events()] == ["Claimed", "Released",
                                                                   "Reclaimed"]


def test_the_shipped_defaults_are_the_seeds_15_with_valid_codes_and_distinct_names():
    defaults = load_defaults()
    assert len(defaults) == 15 and defaults[0] == {"code": "organization", "name": "组织部"}
    assert len({d["name"] for d in defaults}) == 15
    for d in defaults:
        assert Department.add(d["code"], d["name"], ADMIN).code == d["code"]
