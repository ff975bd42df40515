"""Layer module (filled in by its issue): exports ASSETS, CHECKS, JOBS, SCHEDULES, SENSORS, RESOURCES."""

ASSETS: list = []
CHECKS: list = []
JOBS: list = []
SCHEDULES: list = []
SENSORS: list = []
RESOURCES: dict = {}
