"""``POST /jobs/notice``: a batch job says it ended (operators/hpc/notice.py), so its machine's pollers
look at once instead of at their next poll.

A compute node holds no Airflow token: the notice is authenticated by its own token, an HMAC of the
machine, the job's name and a nonce under the deployment's notice secret, which only a job script
urgentflow wrote carries. Each nonce is accepted once (409 after). A notice changes no state: the poll
it causes is what judges the job, so a notice for a job that did not end costs one poll.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from operators.catalog.notices import NoticeCatalog
from operators.hpc.notice import notice_secret, verify
from operators.hpc.spec import NAME_RE, NONCE_RE, TOKEN_RE
from operators.machines.catalog import NAME, load_catalog

log = logging.getLogger(__name__)
router = APIRouter()


class NoticeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    machine: str = Field(pattern=NAME, description="the machine the job ran on")
    job: str = Field(pattern=NAME_RE.pattern, description="the job's name")
    nonce: str = Field(pattern=NONCE_RE.pattern)
    token: str = Field(pattern=TOKEN_RE.pattern)


class NoticeOut(BaseModel):
    accepted: bool


REFUSED = "not a valid notice for this deployment"


@router.post(
    "/jobs/notice",
    status_code=202,
    response_model=NoticeOut,
    summary="A batch job's completion notice (sent by the job script; authenticated by its own token)",
    responses={
        403: {"description": "not a valid notice: unknown machine, notices off there, or a wrong token"},
        409: {"description": "this notice was already received"},
    },
)
def job_notice(notice: NoticeIn) -> NoticeOut:
    # One answer for every refusal, so a caller without the secret learns nothing (not even which
    # machines exist); the log says which it was.
    machine = load_catalog().get(notice.machine)
    secret = notice_secret()
    if machine is None or not machine.completion_notice or secret is None:
        log.warning("job notice for %r refused: no such machine, or it takes no notices", notice.machine)
        raise HTTPException(status_code=403, detail=REFUSED)
    if not verify(secret, notice.machine, notice.job, notice.nonce, notice.token):
        log.warning("job notice for %s on %s refused: its token does not match", notice.job, notice.machine)
        raise HTTPException(status_code=403, detail=REFUSED)
    if not NoticeCatalog().accept_notice(notice.machine, notice.job, notice.nonce):
        raise HTTPException(status_code=409, detail="this notice was already received")
    return NoticeOut(accepted=True)
