"""Hypothesis strategies shared by the tests."""

from hypothesis import strategies as st

from traffic_retrieval.core.attributes import AGE_BANDS, GENDERS, ORIENTATIONS, PEDESTRIAN_BOOLS, SLEEVES, Pedestrian

pedestrians = st.builds(
    Pedestrian,
    gender=st.sampled_from(GENDERS),
    age=st.sampled_from(AGE_BANDS),
    orientation=st.sampled_from(ORIENTATIONS),
    sleeve=st.sampled_from(SLEEVES),
    **{name: st.booleans() for name in PEDESTRIAN_BOOLS},
)
