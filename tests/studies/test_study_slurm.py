"""``nnUNetv2_resunet_study submit`` through submitit, against stand-ins for SLURM's commands that this test writes
onto PATH: ``sbatch`` records each submission (its #SBATCH flags: array, dependency, resources) and queues it;
``fake_slurm.py run`` then executes the queue like a scheduler would (a job starts when its dependency is met, each
array task with the SLURM variables submitit reads, through ``srun``; at a time limit the job's ``--signal``, and
``scontrol requeue`` puts a job back into the queue); ``sacct``/``squeue``/``scancel`` answer from the same
records."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import submitit
from conftest import DEFAULT_SHORT, REQUEUED, RESUMABLE, RESUNET_SHORT, write_study
from nnunet_workspace import SYNTHETIC_NAME, processes_running

FAKE_SLURM = r'''
import json, os, re, shlex, signal, subprocess, sys, time, zipfile
from pathlib import Path

HERE = Path(__file__).parent
RECORD = HERE / "jobs.json"


def load():
    return json.loads(RECORD.read_text()) if RECORD.exists() else []


def save(jobs):
    RECORD.write_text(json.dumps(jobs, indent=1))


def sbatch(args):
    script = Path(args[-1])
    flags = {k: (shlex.split(v)[0] if v else True)
             for k, v in re.findall(r"^#SBATCH --([\w-]+)(?:=(.*))?$", script.read_text(), re.M)}
    jobs = load()
    job_id = str(7000 + len(jobs))
    jobs.append({"id": job_id, "script": str(script), "flags": flags, "state": "PENDING",
                 "env": dict(os.environ), "tasks": {}})
    save(jobs)
    print(f"Submitted batch job {job_id}")


def verdict(job, jobs):
    """'ready', 'wait' or 'never' for a job's --dependency (afterok / afterany on whole jobs, ',' = all)."""
    states = {j["id"]: j["state"] for j in jobs}
    for clause in filter(None, str(job["flags"].get("dependency", "")).split(",")):
        kind, *ids = clause.split(":")
        for dep in ids:
            state = states.get(dep, "UNKNOWN")
            if state in ("PENDING", "UNKNOWN"):
                return "wait"
            if kind == "afterok" and state != "COMPLETED":
                return "never"
    return "ready"


def task_ids(job):
    if "array" not in job["flags"]:
        return [None]
    first, last = job["flags"]["array"].split("%")[0].split("-")
    return list(range(int(first), int(last) + 1))


def run_queue():
    jobs = load()
    progress = True
    while progress:
        progress = False
        for job in jobs:
            if job["state"] != "PENDING":
                continue
            ready = verdict(job, jobs)
            if ready == "wait":
                continue
            progress = True
            if ready == "never":
                job["state"] = "CANCELLED"
                continue
            codes = {}
            for task in task_ids(job):
                env = {**job["env"], "SLURM_JOB_ID": job["id"] if task is None else f"{job['id']}{task:03d}",
                       "SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
                       "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_NODELIST": "localhost"}
                if task is not None:
                    env.update(SLURM_ARRAY_JOB_ID=job["id"], SLURM_ARRAY_TASK_ID=str(task))
                codes[str(task)] = run_task(job, env)
            requeue = HERE / f"requeue_{job['id']}"
            if requeue.exists():  # scontrol requeue: the job goes back into the queue and runs again, same id
                requeue.unlink()
                job["requeues"] = job.get("requeues", 0) + 1
                save(jobs)
                continue
            job["tasks"] = {t: "COMPLETED" if c == 0 else "FAILED" for t, c in codes.items()}
            job["state"] = "COMPLETED" if not any(codes.values()) else "FAILED"
            save(jobs)
    save(jobs)


def complete_checkpoint(path):
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/data.pkl") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def run_task(job, env):
    """Run one task. With FAKE_SLURM_TIME_LIMIT="<job name>=<checkpoint file>" in the job's environment, that job
    reaches its time limit once the file is a complete checkpoint: SLURM then sends the --signal the job asked for
    (submitit's USR2) to the task's processes, here to the srun'd one."""
    process = subprocess.Popen(["bash", job["script"]], env=env)
    name, _, limit = job["env"].get("FAKE_SLURM_TIME_LIMIT", "=").partition("=")
    pid_file, deadline = HERE / f"srun_{env['SLURM_JOB_ID']}.pid", time.monotonic() + 900
    while process.poll() is None:
        if time.monotonic() > deadline:
            process.kill()
        if (name == job["flags"]["job-name"] and not job.get("time_limit_reached") and pid_file.exists()
                and complete_checkpoint(limit)):
            job["time_limit_reached"] = True
            assert job["flags"]["signal"] == "USR2@90", job["flags"]  # what submitit asks SLURM for
            os.kill(int(pid_file.read_text()), signal.SIGUSR2)
        time.sleep(0.1)
    return process.wait(timeout=60)


def srun(args):
    out = err = None
    while args and args[0].startswith("--"):
        flag = args.pop(0)
        if flag in ("--output", "--error"):
            path = args.pop(0)
            for key, var in (("%A", "SLURM_ARRAY_JOB_ID"), ("%a", "SLURM_ARRAY_TASK_ID"), ("%j", "SLURM_JOB_ID")):
                path = path.replace(key, os.environ.get(var, ""))
            path = path.replace("%t", "0")
            if flag == "--output":
                out = path
            else:
                err = path
    (HERE / f"srun_{os.environ['SLURM_JOB_ID']}.pid").write_text(str(os.getpid()))
    with open(out, "a") as stdout, open(err or out, "a") as stderr:
        os.dup2(stdout.fileno(), 1)
        os.dup2(stderr.fileno(), 2)
    os.execvp(args[0], args)  # the task's process is the command itself, as under SLURM


def scontrol(args):
    if args[0] == "requeue":
        (HERE / f"requeue_{args[1]}").write_text("")


def sacct(args):
    wanted = [args[i + 1] for i, a in enumerate(args) if a == "-j"]
    print("JobID|State|NodeList")
    for job in load():
        if job["id"] in wanted:
            for task, state in (job["tasks"] or {"None": job["state"]}).items():
                print(f"{job['id'] if task == 'None' else job['id'] + '_' + task}|{state}|localhost")


def squeue(args):
    """What the study asks: --noheader --array --format=%A|%a|%T (one line per array task)."""
    assert "--noheader" in args and "--array" in args and "--format=%A|%a|%T" in args, args
    for job in load():
        if job["state"] == "PENDING":
            for task in task_ids(job):
                print(f"{job['id']}|{'N/A' if task is None else task}|PENDING")


def scancel(args):
    jobs = load()
    for job in jobs:
        if job["id"] in args and job["state"] == "PENDING":
            job["state"] = "CANCELLED"
    save(jobs)


if __name__ == "__main__":
    {"sbatch": sbatch, "run": lambda a: run_queue(), "srun": srun, "sacct": sacct, "squeue": squeue,
     "scancel": scancel, "scontrol": scontrol}[sys.argv[1]](sys.argv[2:])
'''


class FakeSlurm:
    """The stand-ins in a folder put first on PATH; their records in ``jobs.json``."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir()
        (folder / "fake_slurm.py").write_text(FAKE_SLURM)
        for command in ("sbatch", "srun", "sacct", "squeue", "scancel", "scontrol"):
            script = folder / command
            script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{folder / "fake_slurm.py"}" {command} "$@"\n')
            script.chmod(0o755)

    def env(self, base: dict[str, str]) -> dict[str, str]:
        return {**base, "PATH": f"{self.folder}{os.pathsep}{base['PATH']}"}

    @property
    def jobs(self) -> list[dict]:
        path = self.folder / "jobs.json"
        return json.loads(path.read_text()) if path.exists() else []

    def run_queue(self) -> None:
        subprocess.run([sys.executable, str(self.folder / "fake_slurm.py"), "run"], check=True, timeout=900)


def submitted_keys(slurm_folder: Path, job: dict) -> list[str]:
    """The run keys the tasks of a recorded job execute, read back through submitit from what it pickled."""
    ids = [job["id"]] if "array" not in job["flags"] else [f"{job['id']}_{t}" for t in range(
        int(job["flags"]["array"].split("%")[0].split("-")[1]) + 1)]
    return [submitit.SlurmJob(slurm_folder / "%j", i).submission().args[1] for i in ids]


def test_submit_chains_stages_as_arrays_with_dependencies(study_workspace, study_cli, tmp_path):
    """A study that needs everything, on plans of its own: one array job per stage, each after the one before it,
    resources from the study file and the command line. Submitted only (the next test executes a submission)."""
    slurm = FakeSlurm(tmp_path / "bin")
    study = write_study(study_workspace.studies, "chain", [DEFAULT_SHORT, RESUNET_SHORT], folds=[0, 1],
                        dataset_lines='plans = "nnUNetPlans_chain"\ngpu_memory_target = 1',
                        extra='[slurm]\npartition = "gpu"\nmem_gb = 16\nsetup = ["echo setup"]\n'
                              '[slurm.report]\ntime = 30\n')
    folder = tmp_path / "submitit"
    _, out, _ = study_cli("submit", study, "-time", "90", "-slurm_folder", folder, env=slurm.env(study_workspace.env))
    preprocess, train, predict, report = slurm.jobs
    assert [j["flags"]["job-name"] for j in slurm.jobs] == ["chain:preprocess", "chain:train", "chain:predict",
                                                            "chain:report"]
    assert "array" not in preprocess["flags"] and train["flags"]["array"] == "0-3%4"
    assert predict["flags"]["array"] == "0-1%2" and "array" not in report["flags"]
    assert "dependency" not in preprocess["flags"]
    assert train["flags"]["dependency"] == f"afterok:{preprocess['id']}"
    assert predict["flags"]["dependency"] == f"afterany:{train['id']}"
    assert report["flags"]["dependency"] == f"afterany:{train['id']}:{predict['id']}"
    assert all(j["flags"].get("kill-on-invalid-dep") == "yes" for j in (train, predict, report))
    assert {j["flags"]["partition"] for j in slurm.jobs} == {"gpu"}
    assert [j["flags"]["time"] for j in slurm.jobs] == ["90", "90", "90", "30"]  # -time, then [slurm.report]
    assert [j["flags"].get("gpus-per-node") for j in slurm.jobs] == [None, "1", "1", None]
    assert {j["flags"]["mem"] for j in slurm.jobs} == {"16384MB"}
    assert "echo setup" in Path(train["script"]).read_text()
    # What each task runs: one run of the study each, in the order of the status table.
    assert submitted_keys(folder, train) == [f"train {SYNTHETIC_NAME} {t}__nnUNetPlans_chain__2d fold_{f}"
                                             for t in (DEFAULT_SHORT, RESUNET_SHORT) for f in (0, 1)]
    assert submitted_keys(folder, preprocess) == [f"preprocess {SYNTHETIC_NAME} nnUNetPlans_chain"]
    assert f"{'train':<10} job {train['id']}: 4 run(s)" in out


def test_submitted_jobs_finish_what_is_missing_and_a_job_at_its_time_limit_resumes_with_c(study_workspace, local_study,
                                                                                        study_cli, tmp_path):
    """A study of its own sharing the local study's nnU-Net folders: nnU-Net's default (done there) and a 3-epoch
    ResUnet v0.1, submitted to the stand-in SLURM, which runs the jobs through srun and submitit on this machine.
    Only what is missing is submitted. The training job reaches its time limit after its first checkpoint: SLURM
    signals it (USR2, as submitit asks), submitit checkpoints the StudyJob (it is Checkpointable) and requeues it
    with scontrol; the job runs again and the study resumes the fold with --c from that checkpoint instead of
    starting over. Everything done, a resubmission submits nothing. (One SLURM run for both: each costs a training.)"""
    slurm = FakeSlurm(tmp_path / "bin")
    study = write_study(study_workspace.studies, "tiny_slurm", [DEFAULT_SHORT, REQUEUED])
    run_folder = study_workspace.model_dir(REQUEUED) / "fold_0"
    env = {**slurm.env(study_workspace.env),
           "FAKE_SLURM_TIME_LIMIT": f"tiny_slurm:train={run_folder / 'checkpoint_latest.pth'}"}
    folder = tmp_path / "submitit"
    # One minute: submitit then counts any signal as the time limit (not a preemption) when it arrives.
    study_cli("submit", study, "-time", "1", "-slurm_folder", folder, env=env)
    submitted = slurm.jobs
    slurm.run_queue()

    # Preprocessing and nnU-Net's default are done: only ResUnet's training and prediction, and the report.
    assert [(j["flags"]["job-name"], "array" in j["flags"]) for j in submitted] == [
        ("tiny_slurm:train", False), ("tiny_slurm:predict", False), ("tiny_slurm:report", False)]
    assert submitted_keys(folder, submitted[0]) == [f"train {SYNTHETIC_NAME} {REQUEUED}__nnUNetPlans__2d fold_0"]
    # The queue ran them in order, each through srun and submitit, on this machine; the training twice.
    train, predict, report = slurm.jobs
    assert [j["state"] for j in (train, predict, report)] == ["COMPLETED"] * 3
    assert train["time_limit_reached"] and train.get("requeues") == 1
    assert submitit.SlurmJob(folder / "%j", train["id"]).result() == "done"  # what StudyJob returned, via sacct
    attempts = (run_folder / "study_train.log").read_text().split("=== nnUNetv2_resunet_study")[1:]
    commands = [a.splitlines()[1] for a in attempts]
    assert len(commands) == 2 and "--c" not in commands[0] and commands[1].endswith("-device cpu --c"), commands
    assert re.search(r"=== exit code -?\d+ after", attempts[0])  # the first attempt's nnU-Net was stopped, logged
    assert processes_running(REQUEUED) == []  # ... with its data-augmentation workers (they outlive a SIGTERM)
    assert "=== exit code 0 after" in attempts[1]
    assert (run_folder / "checkpoint_final.pth").is_file() and (run_folder / "validation" / "summary.json").is_file()
    newest = max(run_folder.glob("training_log_*.txt"), key=lambda p: p.stat().st_mtime)
    epochs = [int(e) for e in re.findall(r": Epoch (\d+)\s*$", newest.read_text(), flags=re.MULTILINE)]
    assert epochs and epochs[0] >= 1  # resumed after the checkpointed epoch, not from epoch 0
    stderr = "".join(p.read_text() for p in folder.rglob("*_log.err"))
    assert "Caught signal SIGUSR2" in stderr and "this job is timed-out" in stderr
    report_folder = study_workspace.nnunet.results / "studies" / "tiny_slurm" / SYNTHETIC_NAME
    summary = json.loads((report_folder / "summary.json").read_text())
    assert {r["label"] for r in summary["runs"]} == {f"{t} nnUNetPlans 2d ({s})" for t in (DEFAULT_SHORT, REQUEUED)
                                                    for s in ("cv", "test")}
    # Everything done: a resubmission submits nothing.
    assert "nothing to submit" in study_cli("submit", study, "-slurm_folder", folder, env=env)[1]
    assert len(slurm.jobs) == 3


def test_submit_without_slurm_says_so(study_workspace, local_study, study_cli):
    env = {**study_workspace.env, "PATH": os.path.dirname(sys.executable)}  # no sbatch, no srun
    code, _, err = study_cli("submit", local_study, env=env, check=False)
    assert code == 2
    assert "submit needs SLURM's sbatch and srun on PATH (missing: sbatch, srun)" in err


def test_a_second_submit_before_the_jobs_start_submits_nothing_twice(study_workspace, study_cli, tmp_path):
    """Jobs still queued (they hold no lock yet) count as in progress: submitting again submits nothing, status names
    the queued jobs, and a trainer added meanwhile is submitted alone, its jobs after the queued ones, with the report
    again after all of them. In this process, against the stand-in SLURM: nothing runs."""
    slurm = FakeSlurm(tmp_path / "bin")
    folder = tmp_path / "submitit"

    def study_command(command: str, trainers: list[str]) -> str:
        study = write_study(study_workspace.studies, "queued", trainers, folds=[0, 1],
                            dataset_lines='plans = "nnUNetPlans_queued"\ngpu_memory_target = 1')
        extra = ["-slurm_folder", folder] if command == "submit" else []
        return study_cli(command, study, *extra, env=slurm.env(study_workspace.env))[1]

    study_command("submit", [DEFAULT_SHORT, RESUNET_SHORT])
    preprocess, train, predict, report = slurm.jobs
    assert "nothing to submit" in study_command("submit", [DEFAULT_SHORT, RESUNET_SHORT])
    assert len(slurm.jobs) == 4
    status = study_command("status", [DEFAULT_SHORT, RESUNET_SHORT])
    assert re.search(rf"{RESUNET_SHORT}__nnUNetPlans_queued__2d\s+fold_1\s+waiting\s+SLURM job {train['id']}_3 "
                     rf"\(PENDING\); after preprocess", status), status

    study_command("submit", [DEFAULT_SHORT, RESUNET_SHORT, RESUMABLE])
    new_train, new_predict, new_report = slurm.jobs[4:]
    assert submitted_keys(folder, new_train) == [f"train {SYNTHETIC_NAME} {RESUMABLE}__nnUNetPlans_queued__2d fold_{f}"
                                                 for f in (0, 1)]
    assert new_train["flags"]["dependency"] == f"afterok:{preprocess['id']}"
    assert new_predict["flags"]["dependency"] == f"afterany:{train['id']}:{new_train['id']}"
    assert new_report["flags"]["dependency"] == \
        f"afterany:{train['id']}:{new_train['id']}:{predict['id']}:{new_predict['id']}"
    assert submitted_keys(folder, new_report) == [f"report {SYNTHETIC_NAME}"]
