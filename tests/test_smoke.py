from datetime import date

from episodes import EpisodeStatus
from tests.pathways import admitted_episode, attend


def test_an_admitted_episode_records_a_session(app, clinician):
    episode = admitted_episode(app, clinician, date(2026, 3, 2))
    receipt = attend(app, episode, clinician, date(2026, 3, 5))
    # Check the session is the fourth event of the stream: referral, intake, admission, session.
    assert receipt.version == 4
    assert app.episode(episode).status is EpisodeStatus.ACTIVE
