package web

import (
	"net/http"
	"strconv"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/protocol"
)

// scheduleRoutes registers the admin API of scheduled jobs (scope admin,
// docs/scheduler.md), the REST adapter of schedule.Scheduler.
func (s *Server) scheduleRoutes() {
	s.handle("GET /api/v1/admin/schedules", s.requireScope(auth.ScopeAdmin, s.serveSchedules))
	s.handle("POST /api/v1/admin/schedules", s.requireScope(auth.ScopeAdmin, s.serveScheduleCreate))
	s.handle("GET /api/v1/admin/schedules/{name}", s.requireScope(auth.ScopeAdmin, s.serveSchedule))
	s.handle("DELETE /api/v1/admin/schedules/{name}", s.requireScope(auth.ScopeAdmin, s.serveScheduleDelete))
	s.handle("POST /api/v1/admin/schedules/{name}/run", s.requireScope(auth.ScopeAdmin, s.serveScheduleRun))
	s.handle("GET /api/v1/admin/schedules/{name}/runs", s.requireScope(auth.ScopeAdmin, s.serveScheduleRuns))
}

// scheduleOps documents scheduleRoutes in the OpenAPI document.
func scheduleOps() []apiOp {
	const tag = "Scheduler"
	return []apiOp{
		{method: "GET", path: "/api/v1/admin/schedules", id: "listSchedules", summary: "Every scheduled job, configured and created through the API", tag: tag, scope: "admin", status: 200, result: "ScheduleList"},
		{method: "POST", path: "/api/v1/admin/schedules", id: "createSchedule", summary: "Create a scheduled job", tag: tag, scope: "admin", body: "ScheduleSpec", status: 201, result: "Schedule"},
		{method: "GET", path: "/api/v1/admin/schedules/{name}", id: "getSchedule", summary: "One scheduled job, with its next run", tag: tag, scope: "admin", status: 200, result: "Schedule"},
		{method: "DELETE", path: "/api/v1/admin/schedules/{name}", id: "deleteSchedule", summary: "Delete a job created through the API, and its history", tag: tag, scope: "admin", status: 200, result: "Schedule"},
		{method: "POST", path: "/api/v1/admin/schedules/{name}/run", id: "runSchedule", summary: "Run a job now, on this node, and answer the recorded run", tag: tag, scope: "admin", status: 200, result: "ScheduleRun"},
		{method: "GET", path: "/api/v1/admin/schedules/{name}/runs", id: "scheduleRuns", summary: "A job's run history, newest first", tag: tag, scope: "admin", status: 200, result: "ScheduleRunList",
			query: []apiParam{{"limit", "integer", "1..100 (default 100)", false}}},
	}
}

func (s *Server) schedulerMissing(w http.ResponseWriter) bool {
	if s.deps.Schedule == nil {
		writeError(w, protocol.Errorf(protocol.CodeNotFound, "this server has no scheduler"))
		return true
	}
	return false
}

func (s *Server) scheduleError(w http.ResponseWriter, err error) {
	if pe := protocol.AsError(err); pe.Code == protocol.CodeInternal {
		s.log.Error("scheduler request failed", "err", err)
	}
	writeError(w, err)
}

func (s *Server) serveSchedules(w http.ResponseWriter, r *http.Request, _ *auth.Principal) {
	if s.schedulerMissing(w) {
		return
	}
	items, err := s.deps.Schedule.List(r.Context())
	if err != nil {
		s.scheduleError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, protocol.ScheduleList{Items: items})
}

func (s *Server) serveScheduleCreate(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if s.schedulerMissing(w) {
		return
	}
	var spec protocol.ScheduleSpec
	if err := DecodeJSON(r, &spec); err != nil {
		writeError(w, err)
		return
	}
	job, err := s.deps.Schedule.Create(r.Context(), spec)
	if err != nil {
		s.scheduleError(w, err)
		return
	}
	s.log.Info("scheduled job created through the API", "job", job.Name, "user", p.UserID, "device", p.DeviceID)
	writeJSON(w, http.StatusCreated, job)
}

func (s *Server) serveSchedule(w http.ResponseWriter, r *http.Request, _ *auth.Principal) {
	if s.schedulerMissing(w) {
		return
	}
	job, err := s.deps.Schedule.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		s.scheduleError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, job)
}

func (s *Server) serveScheduleDelete(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if s.schedulerMissing(w) {
		return
	}
	job, err := s.deps.Schedule.Delete(r.Context(), r.PathValue("name"))
	if err != nil {
		s.scheduleError(w, err)
		return
	}
	s.log.Info("scheduled job deleted through the API", "job", job.Name, "user", p.UserID, "device", p.DeviceID)
	writeJSON(w, http.StatusOK, job)
}

func (s *Server) serveScheduleRun(w http.ResponseWriter, r *http.Request, _ *auth.Principal) {
	if s.schedulerMissing(w) {
		return
	}
	run, err := s.deps.Schedule.RunNow(r.Context(), r.PathValue("name"))
	if err != nil {
		s.scheduleError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, run)
}

func (s *Server) serveScheduleRuns(w http.ResponseWriter, r *http.Request, _ *auth.Principal) {
	if s.schedulerMissing(w) {
		return
	}
	limit := 0
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			writeError(w, protocol.FieldError("limit", "want an integer in 1..100"))
			return
		}
		limit = n
	}
	runs, err := s.deps.Schedule.Runs(r.Context(), r.PathValue("name"), limit)
	if err != nil {
		s.scheduleError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, protocol.ScheduleRunList{Items: runs})
}
