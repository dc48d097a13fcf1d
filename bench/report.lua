-- Prints wrk's summary as one JSON line, so the harness reads numbers instead of scraping prose.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK-JSON {"requests": %d, "duration_us": %d, "p99_us": %d, "max_us": %d, '
    .. '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
