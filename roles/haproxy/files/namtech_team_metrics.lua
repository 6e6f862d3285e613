-- Copyright: (c) 2026, Namtech
-- GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
--
-- Per-team figures of the load balancer in Prometheus' text format, read from the st_teams stick table that the
-- `ai` frontend fills (one entry per team, tracked once its API key is valid). HAProxy's own exporter does not
-- export stick table entries, hence this service; the haproxy role serves it at /metrics/teams.
-- The counters restart from zero when HAProxy reloads (stick tables are not carried over), which rate() and
-- increase() in Prometheus handle like any counter reset.

local TABLE = "st_teams"

-- stick table column, metric name, type, help
local METRICS = {
    {"http_req_cnt", "namtech_lb_team_requests_total", "counter",
     "Requests with a valid API key of the team, refused ones included."},
    {"conn_cur", "namtech_lb_team_requests_in_flight", "gauge", "Requests of the team being served now."},
    {"http_err_cnt", "namtech_lb_team_client_errors_total", "counter", "Answers 4xx to the team's requests."},
    {"http_fail_cnt", "namtech_lb_team_server_errors_total", "counter", "Answers 5xx to the team's requests."},
    {"gpc0", "namtech_lb_team_limited_total", "counter",
     "Requests refused with 429 by their API key's rate or concurrency limit."},
    {"bytes_in_cnt", "namtech_lb_team_received_bytes_total", "counter", "Bytes received from the team's clients."},
    {"bytes_out_cnt", "namtech_lb_team_sent_bytes_total", "counter", "Bytes sent to the team's clients."},
}

local function label_value(text)
    return (tostring(text):gsub("\\", "\\\\"):gsub("\n", "\\n"):gsub("\"", "\\\""))
end

local function exposition(entries)
    local teams = {}
    for team in pairs(entries) do
        teams[#teams + 1] = team
    end
    table.sort(teams)
    local lines = {}
    for _, metric in ipairs(METRICS) do
        local column, name, kind, help = metric[1], metric[2], metric[3], metric[4]
        lines[#lines + 1] = "# HELP " .. name .. " " .. help
        lines[#lines + 1] = "# TYPE " .. name .. " " .. kind
        for _, team in ipairs(teams) do
            local value = entries[team][column] or 0
            lines[#lines + 1] = string.format('%s{team="%s"} %d', name, label_value(team), value)
        end
    end
    return table.concat(lines, "\n") .. "\n"
end

core.register_service("namtech_team_metrics", "http", function(applet)
    local body = exposition(core.backends[TABLE].stktable:dump())
    applet:set_status(200)
    applet:add_header("content-type", "text/plain; version=0.0.4; charset=utf-8")
    applet:add_header("content-length", tostring(#body))
    applet:start_response()
    applet:send(body)
end)
