"""README opens with the two set-up commands, and CI runs exactly the second."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(block) == 2
    main_job, test_command = block
    assert "metabench" in main_job
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == test_command


def test_readme_results_come_from_the_leaderboard_files():
    """README's Results table is what scripts/readme_results.py builds from leaderboards/, not typed by hand."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_results.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "| needle/single |" in (ROOT / "README.md").read_text()


def test_layout_names_every_module():
    """README's Layout is a map with a line per module: a module added without its line fails here."""
    layout = (ROOT / "README.md").read_text().split("## Layout\n", 1)[1].split("```", 2)[1]
    names = {word for line in layout.splitlines() for word in line.split()}
    missing = []
    for path in sorted((ROOT / "metabench").rglob("*.py")):
        rel = path.relative_to(ROOT / "metabench")
        if rel.name not in names or any(f"{d}/" not in names for d in rel.parts[:-1]):
            missing.append(str(rel))
    assert not missing, f"add a line for each to README's Layout: {', '.join(missing)}"


def test_readme_states_the_quick_tier_and_pytest_knows_its_marker():
    readme = (ROOT / "README.md").read_text()
    assert '\n    python3 -m pytest -q -m "not slow"\n' in readme
    assert '"slow: ' in (ROOT / "pyproject.toml").read_text()  # registered, so a typo in a mark is visible


def test_readme_detectable_drops_are_what_the_script_prints():
    """The 'Gate your checkpoints' table is scripts/detectable_drop.py's output, not typed by hand."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "detectable_drop.py"), "--markdown"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- detectable:start -->\n", 1)[1].split("<!-- detectable:end -->", 1)[0]
    assert block.strip() == r.stdout.strip()
