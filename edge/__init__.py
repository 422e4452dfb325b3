"""shangyun edge core: vocabulary, pipeline, embedded store, rollups. Imports nothing of ours."""
