"""``POST /jobs/notice``: a batch job says it ended (operators/hpc/notice.py), so its machine's pollers
look at once instead of at their next poll.

A compute node holds no Airflow token: the notice is authenticated by its own token, an HMAC of the
machine, the job's name and a nonce under the deployment's notice secret, which only a job script
urgentflow wrote carries. Each nonce is accepted once (409 after). A notice changes no state: the poll
it causes is what judges the job, so a notice for a job that did not end costs one poll.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from operators.catalog.notices import NoticeCatalog
from operators.hpc.notice import notice_secret, verify
from operators.hpc.spec import NAME_RE, NONCE_RE, TOKEN_RE
from operators.machines.catalog import NAME, load_catalog

router = APIRouter()


class NoticeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    machine: str = Field(pattern=NAME, description="the machine the job ran on")
    job: str = Field(pattern=NAME_RE.pattern, description="the job's name")
    nonce: str = Field(pattern=NONCE_RE.pattern)
    token: str = Field(pattern=TOKEN_RE.pattern)


class NoticeOut(BaseModel):
    accepted: bool


@router.post(
    "/jobs/notice",
    status_code=202,
    response_model=NoticeOut,
    summary="A batch job's completion notice (sent by the job script; authenticated by its own token)",
    responses={
        403: {"description": "the token does not match the notice"},
        404: {"description": "no such machine, or it takes no completion notices"},
        409: {"description": "this notice was already received"},
    },
)
def job_notice(notice: NoticeIn) -> NoticeOut:
    machine = load_catalog().get(notice.machine)
    secret = notice_secret()
    if machine is None or not machine.completion_notice or secret is None:
        raise HTTPException(status_code=404, detail=f"machine {notice.machine!r} takes no completion notices")
    if not verify(secret, notice.machine, notice.job, notice.nonce, notice.token):
        raise HTTPException(status_code=403, detail="the notice's token does not match it")
    if not NoticeCatalog().accept_notice(notice.machine, notice.job, notice.nonce):
        raise HTTPException(status_code=409, detail="this notice was already received")
    return NoticeOut(accepted=True)
