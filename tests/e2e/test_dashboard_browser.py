"""The 组织部 dashboard in headless Chromium, on the demo university.

Loads the demo through RPC, logs in with a token through the form, checks
every number on the page against the RPC answers, follows one drill-down
link, and saves screenshots under .artifacts/. Needs Debian's chromium and
chromium-driver (installed by scripts/ensure-infra.sh); without them the test
is skipped, loudly.
"""
import os
import shutil
from pathlib import Path

import pytest

from services.evaluation import demo as evaluation_demo
from services.notifications import demo as notifications_demo
from services.organizations import demo as organizations_demo
from tests.conftest import SERVICES, token

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).resolve().parents[2] / ".artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("CI"):  # CI installs them (scripts/ensure-infra.sh): never skip there
            pytest.fail("chromium and chromium-driver are missing on the CI machine")
        pytest.skip("!!! SKIPPED: Debian's chromium and chromium-driver are not installed "
                    "(scripts/ensure-infra.sh installs them as root); the dashboard was NOT "
                    "tested in a browser")
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1700", "--lang=zh-CN"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options,
                            service=webdriver.ChromeService(executable_path=CHROMEDRIVER))


@pytest.fixture
def demo(start_service, start_gateway, rpc_as):
    for name in SERVICES:
        start_service(name)
    base = start_gateway()
    admin = rpc_as("org_admin", sub="demo-loader")
    organizations_demo.load(admin)
    notifications_demo.load(admin)

    def as_secretary(branch_id):
        officers = admin.organizations.get_organization(branch_id)["officers"]
        sub = next(o["member_id"] for o in officers if o["role"] == "secretary")
        return rpc_as("branch_secretary", sub=sub, org=branch_id)

    evaluation_demo.load(admin, as_secretary, len(organizations_demo.plan()[0]))
    return base, admin


def arrive(driver, path: str, element_id: str):
    """Wait until the browser has navigated to ``path`` and shows ``element_id``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 60)
    wait.until(EC.url_contains(path))
    wait.until(EC.presence_of_element_located((By.ID, element_id)))


def number(driver, element_id) -> int:
    from selenium.webdriver.common.by import By

    return int(driver.find_element(By.ID, element_id).text)


def test_dashboard_numbers_match_rpc_and_drill_down(demo):
    from selenium.webdriver.common.by import By

    base, admin = demo
    ARTIFACTS.mkdir(exist_ok=True)
    driver = browser()
    try:
        driver.get(f"{base}/dashboard")
        arrive(driver, "/login", "token")
        driver.find_element(By.ID, "token").send_keys(token("org_admin", sub="zuzhibu.li"))
        driver.find_element(By.ID, "login-submit").click()
        arrive(driver, "/dashboard", "cycle")
        cookie = driver.get_cookie("lianchuang_token")
        assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
        driver.save_screenshot(str(ARTIFACTS / "dashboard.png"))

        stars = admin.evaluation.star_distribution()
        colleges = stars["branches"]["colleges"]
        assert len(colleges) == 6
        for c in colleges:
            for k in ("5", "4", "3", "2", "1"):
                assert number(driver, f"stars-{c['college_id']}-{k}") == len(c["by_stars"][k])
            assert number(driver, f"low-{c['college_id']}") == c["three_or_below"]["count"]
            assert number(driver, f"stars-{c['college_id']}-all") == c["organizations"]
            assert driver.find_element(By.ID, f"high-{c['college_id']}").text == \
                f"{c['four_or_above']['share'] * 100:.0f}%"
        low = stars["branches"]["school"]["three_or_below"]["count"] + \
            stars["colleges"]["three_or_below"]["count"]
        assert low > 0 and number(driver, "low-total") == low

        coverage = admin.organizations.double_leader_coverage()
        school = coverage["school"]
        assert number(driver, "coverage-lacking") == school["teacher_branches"] - school["covered"]
        assert driver.find_element(By.ID, "coverage-school").text == \
            f"{school['coverage'] * 100:.0f}%"
        for c in coverage["colleges"]:
            assert number(driver, f"lacking-{c['college_id']}") == len(c["lacking"])

        cycle = next(c for c in admin.evaluation.list_cycles()
                     if c["name"] == evaluation_demo.THIS_YEAR)
        board = admin.evaluation.progress_board(cycle["id"])
        assert driver.find_element(By.ID, "cycle-name").text == board["name"]
        for stage, entry in board["by_stage"].items():
            assert number(driver, f"stage-{stage}") == entry["count"]
        assert number(driver, "cycle-overdue") == len(board["overdue"])

        # 三级联创: candidacies by title and tier, the task book by status
        programme = admin.evaluation.programme_dashboard()
        for t in programme["candidacies"]:
            for tier in t["tiers"]:
                assert number(driver, f"cand-{t['title']}-{tier['tier']}") == tier["total"]
        # the plan's targets against achievements (目标与完成), one row per target
        assert programme["targets"]["targets"], "the shipped default plan has targets"
        for t in programme["targets"]["targets"]:
            assert number(driver, f"achieved-{t['title']}-{t['tier']}") == t["achieved"]
            assert number(driver, f"pursuing-{t['title']}-{t['tier']}") == t["pursuing"]
        book = programme["task_book"]
        assert book["measures"] > 0
        for status, entry in book["by_status"].items():
            assert number(driver, f"task-{status}") == entry["count"]
        assert number(driver, "task-overdue-items") == len(book["overdue"])
        # the star trend over cycles (五.2, 三.4): each cycle's numbers are the RPC's
        trend = programme["star_trend"]
        assert trend["school"]["branches"], "the demo has last year's finished branch cycle"
        for f in trend["school"]["branches"]:
            assert number(driver, f"trend-high-{f['cycle_id']}") == f["four_or_above"]["count"]
            assert number(driver, f"trend-low-{f['cycle_id']}") == f["three_or_below"]["count"]
            assert driver.find_element(By.ID, f"trend-share-{f['cycle_id']}").text == \
                f"{f['four_or_above']['share']:.0%}"
        for c in trend["colleges"]:
            for f in c["cycles"]:
                assert number(driver, f"trend-low-{c['college_id']}-{f['cycle_id']}") == \
                    f["three_or_below"]["count"]

        # 整改: the organisations owing a rectification not yet verified, by kind,
        # stage and overdue (branches and colleges), and per college's branches
        owing = admin.evaluation.rectifications_owing()
        owed_branches, owed_colleges = owing["branches"]["school"], owing["colleges"]

        def owed(*path):
            a, b = owed_branches, owed_colleges
            for key in path:
                a, b = a[key], b[key]
            return a["count"] + b["count"]

        assert owed("owing") > 0, "the demo's ★3-and-below results owe rectifications"
        assert number(driver, "rect-total") == owed("owing")
        assert number(driver, "rect-overdue") == owed("overdue")
        for kind in ("major_problem", "low_stars"):
            assert number(driver, f"rect-kind-{kind}") == owed("by_kind", kind)
        for stage in ("open", "planned", "completed"):
            assert number(driver, f"rect-stage-{stage}") == owed("by_stage", stage)
        for c in owing["branches"]["colleges"]:
            assert number(driver, f"rect-{c['college_id']}") == c["owing"]["count"]

        # 下钻: the organisations behind "★3 and below" are exactly the RPC's
        driver.find_element(By.ID, "low-total").click()
        arrive(driver, "/dashboard/orgs", "drill-count")
        shown = {row.get_attribute("data-org-id") for row in
                 driver.find_elements(By.CSS_SELECTOR, "#drill-rows tr[data-org-id]")}
        expected = {o["org_id"] for o in stars["branches"]["school"]["three_or_below"]
                    ["organizations"] + stars["colleges"]["three_or_below"]["organizations"]}
        assert shown == expected and number(driver, "drill-count") == low
        driver.save_screenshot(str(ARTIFACTS / "dashboard-drill-down.png"))
        # and a college's ★4+ share lists that college's ★4 and ★5 branches
        first = colleges[0]
        driver.get(f"{base}/dashboard")
        arrive(driver, "/dashboard", f"high-{first['college_id']}")
        driver.find_element(By.ID, f"high-{first['college_id']}").click()
        arrive(driver, "view=high", "drill-count")
        shown = {row.get_attribute("data-org-id") for row in
                 driver.find_elements(By.CSS_SELECTOR, "#drill-rows tr[data-org-id]")}
        assert shown == {o["org_id"] for o in first["four_or_above"]["organizations"]}

        # a cycle's "★3 and below" in the trend lists exactly the branches behind it
        cycle_low = trend["school"]["branches"][0]
        driver.get(f"{base}/dashboard")
        arrive(driver, "/dashboard", f"trend-low-{cycle_low['cycle_id']}")
        driver.find_element(By.ID, f"trend-low-{cycle_low['cycle_id']}").click()
        arrive(driver, "view=trend_low", "drill-count")
        shown = {row.get_attribute("data-org-id") for row in
                 driver.find_elements(By.CSS_SELECTOR, "#drill-rows tr[data-org-id]")}
        listed = admin.evaluation.star_trend()
        assert shown == {o for c in listed["colleges"] for f in c["cycles"]
                         if f["cycle_id"] == cycle_low["cycle_id"]
                         for o in f["three_or_below"]["org_ids"]}
        assert len(shown) == cycle_low["three_or_below"]["count"]

        # the organisations owing a ★3-and-below rectification are exactly the RPC's
        driver.get(f"{base}/dashboard")
        arrive(driver, "/dashboard", "rect-kind-low_stars")
        driver.find_element(By.ID, "rect-kind-low_stars").click()
        arrive(driver, "view=rect", "drill-count")
        shown = {row.get_attribute("data-org-id") for row in
                 driver.find_elements(By.CSS_SELECTOR, "#drill-rows tr[data-org-id]")}
        assert shown == set(owed_branches["by_kind"]["low_stars"]["org_ids"]
                            + owed_colleges["by_kind"]["low_stars"]["org_ids"])
        assert len(shown) == owed("by_kind", "low_stars")

        # a non-admin token is refused at the form
        driver.get(f"{base}/login")
        arrive(driver, "/login", "token")
        driver.find_element(By.ID, "token").send_keys(token("auditor"))
        driver.find_element(By.ID, "login-submit").click()
        arrive(driver, "/login", "login-error")
        assert "org_admin" in driver.find_element(By.ID, "login-error").text
    finally:
        driver.quit()
