FROM python:3.13-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 VAR_DIR=/var/lib/ownedaudience
WORKDIR /app
RUN useradd --system --home /app --uid 1000 app \
    && mkdir -p /var/lib/ownedaudience /var/lib/ownedaudience-media && chown app /var/lib/ownedaudience /var/lib/ownedaudience-media
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
# collectstatic reads settings; these throwaway values exist only for this build step.
RUN SECRET_KEY=build-only DATABASE_URL=sqlite:////tmp/build.sqlite3 STATIC_ROOT=/app/staticfiles \
    python manage.py collectstatic --no-input -v 0
ENV STATIC_ROOT=/app/staticfiles
USER app
EXPOSE 8000
# A send to a million people snapshots inside the request that starts it: allow it time.
CMD ["gunicorn", "ownedaudience.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "120", "--access-logfile", "-"]
