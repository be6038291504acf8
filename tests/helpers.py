"""Helpers shared by the Dagster tests."""


def failure_message(result) -> str:
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return failures[0].step_failure_data.error.message if failures else ""
